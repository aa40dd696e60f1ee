package assembler

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/recipe"
)

// mosquittoUnit is bookworm's mosquitto.service.
const mosquittoUnit = `[Unit]
Description=Mosquitto MQTT Broker
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
ExecStartPre=/bin/mkdir -m 740 -p /var/log/mosquitto
ExecStartPre=/bin/chown mosquitto /var/log/mosquitto
ExecStartPre=-/bin/mkdir -m 740 -p /run/mosquitto

[Install]
WantedBy=multi-user.target
`

func TestUnitServices(t *testing.T) {
	tr := fstree.New()
	add := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const wants = "etc/systemd/system/multi-user.target.wants/"
	add(tr.AddFile("lib/systemd/system/mosquitto.service", []byte(mosquittoUnit), 0o644, "mosquitto"))
	add(tr.AddSymlink(wants+"mosquitto.service", "/lib/systemd/system/mosquitto.service", "dpkg:configure"))
	add(tr.AddFile("lib/systemd/system/old.service", []byte("[Service]\nType=forking\nExecStart=/usr/sbin/oldd\n"), 0o644, "old"))
	add(tr.AddSymlink(wants+"old.service", "/lib/systemd/system/old.service", "dpkg:configure"))
	add(tr.AddFile("lib/systemd/system/once.service", []byte("[Service]\nType=oneshot\nUser=nobody\nEnvironmentFile=-/etc/default/once\nEnvironment=A=1\nExecStart=/usr/bin/once $A\n"), 0o644, "once"))
	add(tr.AddSymlink(wants+"once.service", "/lib/systemd/system/once.service", "dpkg:configure"))
	add(tr.AddFile("lib/systemd/system/ssh.service", []byte("[Service]\nExecStart=/usr/sbin/sshd -D\n"), 0o644, "ssh"))
	add(tr.AddSymlink(wants+"ssh.service", "/lib/systemd/system/ssh.service", "dpkg:configure"))
	add(tr.AddFile("lib/systemd/system/idle.service", []byte("[Service]\nExecStart=/usr/bin/idle\n"), 0o644, "idle")) // not enabled

	got := unitServices(tr)
	if len(got) != 2 {
		t.Fatalf("services %+v, want mosquitto and once", got)
	}
	m := got[0]
	if m.Name != "mosquitto" || m.Restart != recipe.RestartOnFailure || m.User != "" ||
		m.Command != "/bin/mkdir -m 740 -p /var/log/mosquitto || exit 1; /bin/chown mosquitto /var/log/mosquitto || exit 1; "+
			"/bin/mkdir -m 740 -p /run/mosquitto || true; exec /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf" {
		t.Errorf("mosquitto: %+v", m)
	}
	o := got[1]
	if o.Name != "once" || o.Restart != recipe.RestartNo || o.User != "nobody" ||
		o.Command != "if [ -r /etc/default/once ]; then set -a; . /etc/default/once; set +a; fi; export A=1; /usr/bin/once $A" {
		t.Errorf("once: %+v", o)
	}
}

func TestSSHService(t *testing.T) {
	tr := fstree.New()
	if _, ok := sshService(tr, true); ok {
		t.Error("an SSH service without a server")
	}
	if err := tr.AddFile("usr/sbin/dropbear", []byte("x"), 0o755, "dropbear-bin"); err != nil {
		t.Fatal(err)
	}
	sv, ok := sshService(tr, true)
	if !ok || sv.Name != "dropbear" || !strings.Contains(sv.Command, hostKeyDir+"/dropbear_ed25519_host_key") || !strings.HasSuffix(sv.Command, " -s") {
		t.Errorf("dropbear service %+v, want keys in %s and password login off", sv, hostKeyDir)
	}
	if sv, _ := sshService(tr, false); strings.HasSuffix(sv.Command, " -s") {
		t.Errorf("password login off though the recipe sets a password: %s", sv.Command)
	}
}

func TestPackageRequests(t *testing.T) {
	for _, tc := range []struct {
		pkgs []string
		keys bool
		want string
		wifi bool
	}{
		{nil, true, "", false},                         // Kiln Tiny: no packages, no server
		{[]string{"python3"}, false, "python3", false}, // no keys
		{[]string{"python3"}, true, "python3 " + DefaultSSHServer, false},
		{[]string{"openssh-server (>= 1:9)"}, true, "openssh-server (>= 1:9)", false},
		{[]string{"dropbear"}, true, "dropbear", false},
		{[]string{"python3"}, false, "python3 wpasupplicant wireless-regdb firmware-iwlwifi firmware-realtek", true}, // pc adapters' firmware
		{[]string{"wpasupplicant (>= 2)"}, true, "wpasupplicant (>= 2) " + DefaultSSHServer + " wireless-regdb firmware-iwlwifi firmware-realtek", true},
		{nil, false, "", true}, // Kiln Tiny with Wi-Fi settings: no packages
	} {
		r := &recipe.Recipe{}
		r.System.Packages = tc.pkgs
		if tc.keys {
			r.System.Users = []recipe.User{{Name: "pi", SSHKeys: []string{"ssh-ed25519 AAAA"}}}
		}
		if tc.wifi {
			r.System.WiFi = &recipe.WiFi{SSID: "home", PSK: "correct horse", Country: "DE"}
		}
		if got := strings.Join(packageRequests(r), " "); got != tc.want {
			t.Errorf("%q keys=%v wifi=%v: requests %q, want %q", tc.pkgs, tc.keys, tc.wifi, got, tc.want)
		}
	}
}

// TestWiFiBoardSupport: a package image with Wi-Fi gets the board's adapter firmware from the
// archive component that holds it, and loads the board's drivers; without Wi-Fi, or in Kiln
// Tiny, neither.
func TestWiFiBoardSupport(t *testing.T) {
	for _, tc := range []struct {
		board, firmware, module string
	}{
		{"rpi", "firmware-brcm80211", "brcmfmac"},
		{"pc", "firmware-iwlwifi", "iwlmvm"},
		{"arm64-uefi", "firmware-realtek", "rtl8xxxu"},
	} {
		src := "kiln = 1\nname = \"w\"\nversion = \"1.0.0\"\n[board]\nname = \"" + tc.board + "\"\n[system]\npackages = [\"hello\"]\n"
		wifi := "[system.wifi]\nssid = \"home\"\npsk = \"correct horse\"\ncountry = \"DE\"\n"
		for _, withWiFi := range []bool{true, false} {
			text := src
			if withWiFi {
				text += wifi
			}
			r, err := recipe.Parse("kiln.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			reqs, mods, comps := packageRequests(r), kernelModules(r), boardComponents(r)
			if got := slices.Contains(reqs, tc.firmware) && slices.Contains(mods, tc.module) && slices.Contains(comps, "non-free-firmware"); got != withWiFi {
				t.Errorf("%s, Wi-Fi %v: requests %q, modules %q, components %q", tc.board, withWiFi, reqs, mods, comps)
			}
			if withWiFi && !slices.Contains(reqs, "wpasupplicant") {
				t.Errorf("%s: no wpasupplicant in %q", tc.board, reqs)
			}
			// The initramfs mounting a root partition loads the root's modules but not the
			// Wi-Fi drivers: their firmware is on the root, so they load after the switch.
			if boot := bootModules(r, mods); slices.Contains(boot, tc.module) || !slices.Contains(boot, "erofs") || !slices.Contains(boot, "overlay") {
				t.Errorf("%s, Wi-Fi %v: initramfs loads %q", tc.board, withWiFi, boot)
			}
		}
	}
	tiny := recipe.Default()
	tiny.System.WiFi = &recipe.WiFi{SSID: "home", PSK: "correct horse"}
	if mods := kernelModules(tiny); slices.Contains(mods, "iwlmvm") {
		t.Errorf("Kiln Tiny with Wi-Fi settings loads Wi-Fi drivers it has no firmware or supplicant for: %q", mods)
	}
}

// FuzzUnitService: unit files come from packages; translating one never panics and never makes
// a command with a line break (the supervisor script is one line per command).
func FuzzUnitService(f *testing.F) {
	f.Add([]byte(mosquittoUnit))
	f.Add([]byte("[Service]\nExecStart=-@/bin/x\nUser=a\nType=oneshot\n"))
	f.Add([]byte("[Service]\nExecStart=/bin/a \\\n  -b\n"))
	f.Add([]byte("[Service]\nExecStart=/bin/a\r\n"))
	f.Fuzz(func(t *testing.T, unit []byte) {
		sv, ok := unitService("fuzz", unit)
		if ok && strings.ContainsAny(sv.Command, "\n\r\x00") {
			t.Errorf("command with a line break: %q", sv.Command)
		}
	})
}

// TestConfiguredCache: a saved tree reads back with owners, modes, links and origins; a damaged
// cache entry is refused (the build then configures again).
func TestConfiguredCache(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	b := &builder{r: recipe.Default(), opts: Options{Cache: t.TempDir(), SourceDateEpoch: 1704067200}, log: logrus.NewEntry(log)}
	tr := fstree.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddDir("var/lib/mosquitto", 0o750, "dpkg:configure"))
	must(tr.AddFile("usr/bin/passwd", []byte("x"), fs.ModeSetuid|0o755, "passwd 1:4.13"))
	must(tr.AddSymlink("bin", "usr/bin", "base-files"))
	tr.Get("var/lib/mosquitto").UID, tr.Get("var/lib/mosquitto").GID = 101, 102
	infos := []PackageInfo{{Name: "passwd", Version: "1:4.13", Licenses: []string{"GPL-2"}}}
	key := configuredKey(nil, 1)
	if _, _, err := b.loadConfigured(key); err == nil {
		t.Fatal("an empty cache has the tree")
	}
	b.saveConfigured(key, tr, infos)
	got, gotInfos, err := b.loadConfigured(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotInfos) != 1 || gotInfos[0].Name != "passwd" {
		t.Errorf("packages %+v", gotInfos)
	}
	for _, p := range []string{"var/lib/mosquitto", "usr/bin/passwd", "bin"} {
		w, g := tr.Get(p), got.Get(p)
		if g == nil || w.Mode != g.Mode || w.UID != g.UID || w.GID != g.GID || w.Origin != g.Origin ||
			w.Target != g.Target || string(w.Data) != string(g.Data) {
			t.Errorf("%s: read back %+v, saved %+v", p, g, w)
		}
	}
	// One byte changed in the archive: refused.
	file := b.configuredPath(key) + ".tar"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	must(os.WriteFile(file, data, 0o644))
	if _, _, err := b.loadConfigured(key); err == nil {
		t.Error("a damaged cache entry was used")
	}
}

// FuzzReadConfigured: a cache entry whose checksum matches but whose archive is anything never
// panics or allocates beyond the limit.
func FuzzReadConfigured(f *testing.F) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	dir := f.TempDir()
	b := &builder{r: recipe.Default(), opts: Options{Cache: dir}, log: logrus.NewEntry(log)}
	tr := fstree.New()
	if err := tr.AddFile("etc/x", []byte("x"), 0o644, "o"); err != nil {
		f.Fatal(err)
	}
	b.saveConfigured("seed", tr, nil)
	seed, err := os.ReadFile(b.configuredPath("seed") + ".tar")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "c.tar")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		_, _ = readConfigured(file, hex.EncodeToString(sum[:]), 1<<20)
	})
}
