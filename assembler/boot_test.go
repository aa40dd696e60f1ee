package assembler_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testimage"
)

// bootTimeout bounds each wait on the serial console: TCG on two shared cores is slow.
const bootTimeout = 120 * time.Second

// TestBootDefault boots the default image in QEMU (UEFI, TCG) and waits for the ready line.
func TestBootDefault(t *testing.T) {
	res := defaultImage(t)
	g := boot(t, res.Image)
	g.expect(regexp.MustCompile(`kiln: ready name=kiln-tiny version=1\.0\.0 hostname=kiln\b`), bootTimeout)
	t.Logf("ready line after %.1fs", time.Since(g.start).Seconds())
	// Kiln Tiny sets no password, so its serial console is a root shell: run a command in it.
	g.send("\n")
	g.send(`echo "shell=$(id -u)@$(hostname) $((6*7))"` + "\n")
	g.expect(regexp.MustCompile(`shell=0@kiln 42`), bootTimeout)
}

const (
	gardenPassword = "kiln-test-pw"
	gardenPSK      = "correct horse battery"
	gardenKey      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXzEncxyh3P65LMYc4iHdPlQekFmlftxiKo9KMhcYCg alice@garden"
)

// gardenRecipe changes the hostname and the time zone, adds a user with a password and an SSH key,
// Wi-Fi credentials, two extra files (one from the recipe's text, one from a file next to it), an
// overlay directory on the root filesystem and one on the data partition.
var gardenRecipe = `
kiln = 1
name = "garden"
version = "2.3.4"

[system]
hostname = "garden-pi"
timezone = "Europe/Berlin"
overlays = ["testdata/rootfs"]

[system.wifi]
ssid = "garden-net"
psk = "` + gardenPSK + `"
country = "DE"

[[system.users]]
name = "alice"
# openssl passwd -6 -salt kilnsalt kiln-test-pw
password_hash = "$6$kilnsalt$y8TyaIMeovviTo2W8RURdW14XUmw5TK.ztjHJQKbLk2FhOTvXUCCOV1xw11cNn.SKcZ7Y/btqe9yV5ci2GhBg0"
ssh_keys = ["` + gardenKey + `"]

[[system.files]]
path = "/etc/garden/hello.txt"
content = "hello from the recipe\n"

[[system.files]]
path = "/etc/motd"
source = "testdata/motd.txt"

[data]
overlays = ["testdata/data"]
`

// TestBootCustomRecipe logs in on the serial console of a booted custom image as the recipe's
// user and checks that the hostname, the account, the SSH key and the extra files took effect.
func TestBootCustomRecipe(t *testing.T) {
	res := testimage.Build(t, gardenRecipe)
	// The Wi-Fi passphrase is a secret: the manifest lists the file, never the passphrase.
	if data, err := os.ReadFile(res.Manifest); err != nil || bytes.Contains(data, []byte(gardenPSK)) {
		t.Errorf("manifest: %v, or it contains the Wi-Fi passphrase", err)
	}
	g := boot(t, res.Image)
	g.expect(regexp.MustCompile(`kiln: ready name=garden version=2\.3\.4 hostname=garden-pi\b`), bootTimeout)
	// The getty may have printed its prompt before the ready line or after it: ask for a new one.
	g.send("\n")
	g.expect(regexp.MustCompile(`garden-pi login: `), bootTimeout)
	g.send("alice\n")
	g.expect(regexp.MustCompile(`Password: `), bootTimeout)
	g.send(gardenPassword + "\n")
	g.expect(regexp.MustCompile(`Grown in the garden\.`), bootTimeout) // /etc/motd at login
	g.expect(regexp.MustCompile(`\$ $|\$ \r?\n?`), bootTimeout)
	// The quotes keep the markers' echo of the typed line from matching.
	g.send(`echo =BE""GIN=; hostname; id; cat ~/.ssh/authorized_keys; cat /etc/garden/hello.txt; stat -c '%a %U' ~/.ssh ~/.ssh/authorized_keys; date +%Z; cat /usr/share/garden/seeds.txt /data/notes.txt; stat -c '%a %U' /etc/wpa_supplicant/wpa_supplicant.conf; echo =E""ND=` + "\n")
	m := g.expect(regexp.MustCompile(`(?s)=BEGIN=\r?\n(.*?)=END=`), bootTimeout)
	var lines []string
	for _, l := range strings.Split(m[1], "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "kiln-agent:") {
			lines = append(lines, l)
		}
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^garden-pi$`),
		regexp.MustCompile(`^uid=1000\(alice\) gid=1000\(alice\)`),
		regexp.MustCompile(`^` + regexp.QuoteMeta(gardenKey) + `$`),
		regexp.MustCompile(`^hello from the recipe$`),
		regexp.MustCompile(`^700 alice$`),
		regexp.MustCompile(`^600 alice$`),
		regexp.MustCompile(`^CES?T$`),
		regexp.MustCompile(`^tomato basil$`),
		regexp.MustCompile(`^persistent notes$`),
		regexp.MustCompile(`^600 root$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("guest printed %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q does not match %s", i+1, lines[i], re)
		}
	}
}
