package cli

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
)

const settingsKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0eJ7GpKx6ZQm4R4Hc0m2lJ7c4yO7nQ6Xh0b2J5s9B bob@desk"

// TestFlashSettingsRefusedBeforeWriting: wrong first-boot settings stop kiln flash before any drive
// is touched, with a message naming the setting.
func TestFlashSettingsRefusedBeforeWriting(t *testing.T) {
	img := testImageFile(t, 1<<20)
	notKey := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notKey, []byte("remember the milk\n"), 0o644)
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"--ssh-key-text", settingsKey}, "", "needs --user"},
		{[]string{"--wifi-ssid", "x"}, "", "--wifi-psk-stdin"},
		{[]string{"--wifi-country", "DE"}, "", "need --wifi-ssid"},
		{[]string{"--user", "bob", "--password-hash", "plain"}, "", "never put a plain password"},
		{[]string{"--user", "bob", "--password-stdin"}, "\n", "password is empty"},
		{[]string{"--wifi-ssid", "x", "--wifi-psk-stdin"}, "short\n", "PSK of 5 characters"},
		{[]string{"--hostname", "under_score"}, "", "bad hostname"},
		{[]string{"--cloud-init", "/nonexistent/user-data"}, "", "--cloud-init"},
		{[]string{"--user", "bob", "--ssh-key", notKey}, "", "not an SSH public key"},
	} {
		env, _, stderr := flashEnv(tc.stdin)
		args := append([]string{"flash", "--image", img, "--device", "/dev/null", "--yes"}, tc.args...)
		if code := run(t.Context(), env, args); code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr does not say %q:\n%s", tc.args, code, tc.want, stderr)
		}
		if strings.Contains(stderr.String(), "short") && strings.Contains(tc.stdin, "short") {
			t.Errorf("%v: the PSK is echoed:\n%s", tc.args, stderr)
		}
	}
}

// TestFlashWithFirstBootSettings runs kiln flash with every settings flag onto a loop drive and
// reads the boot partition back: the password arrives only as its hash, the key, Wi-Fi and the rest
// as given, and the partition passes fsck, mtools and cloud-init's schema check.
func TestFlashWithFirstBootSettings(t *testing.T) {
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Ubuntu)
	fi, _ := os.Stat(im.Path)
	dev := loopDrive(t, fi.Size(), false)
	keyFile := filepath.Join(dir, "id_ed25519.pub")
	os.WriteFile(keyFile, []byte("# my key\n"+settingsKey+"\n"), 0o644)
	env, stdout, stderr := flashEnv("open sesame\nwifi-passphrase-1\n")
	args := []string{"flash", "--image", im.Path, "--device", dev, "--yes", "--hostname", "ubuntu-lab", "--user", "bob",
		"--password-stdin", "--ssh-key", keyFile, "--wifi-ssid", "Lab Net", "--wifi-psk-stdin", "--wifi-country", "nl",
		"--timezone", "Europe/Amsterdam", "--keyboard", "us"}
	if code := run(t.Context(), env, args); code != 0 {
		t.Fatalf("kiln flash: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "first-boot settings written for cloudinit") {
		t.Fatalf("stdout does not report the settings:\n%s\n%s", stdout, stderr)
	}
	d, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boot := filepath.Join(dir, "boot.fat")
	out, _ := os.Create(boot)
	io.Copy(out, io.NewSectionReader(d, im.BootOffset, im.BootSize))
	out.Close()
	files := customisetest.Check(t, boot, im)
	ud := files["user-data"]
	if strings.Contains(ud, "open sesame") {
		t.Fatalf("the clear-text password is in user-data:\n%s", ud)
	}
	m := regexp.MustCompile(`passwd: (\$6\$\S+)`).FindStringSubmatch(ud)
	if m == nil {
		t.Fatalf("no password hash in user-data:\n%s", ud)
	}
	if h, err := pwhash.Crypt("open sesame", m[1]); err != nil || h != m[1] {
		t.Fatalf("the hash %s is not of the password given (%v)", m[1], err)
	}
	for _, want := range []string{"hostname: ubuntu-lab", "name: bob", settingsKey, "timezone: Europe/Amsterdam", "layout: us"} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q:\n%s", want, ud)
		}
	}
	nc := files["network-config"]
	for _, want := range []string{"Lab Net", "wifi-passphrase-1", "regulatory-domain: NL"} {
		if !strings.Contains(nc, want) {
			t.Errorf("network-config lacks %q:\n%s", want, nc)
		}
	}
	if strings.Contains(stderr.String(), "wifi-passphrase-1") || strings.Contains(stdout.String(), "wifi-passphrase-1") {
		t.Errorf("the passphrase was printed")
	}
}
