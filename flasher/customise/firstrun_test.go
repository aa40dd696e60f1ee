package customise_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
	"github.com/kilnproject/kiln/internal/testenv"
)

// Raspberry Pi OS before Trixie (found by its files, or declared systemd by a catalogue) gets
// Raspberry Pi Imager's firstrun.sh and the cmdline.txt arguments that run it once; the script is
// valid shell, carries every setting (the Wi-Fi passphrase only as its WPA key), and the file
// system stays clean.
func TestFirstrunForRaspberryPiOS(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		kind   customisetest.Kind
		format string
		why    string
	}{
		{customisetest.Bookworm, "", "Raspberry Pi OS before Trixie"},
		{customisetest.RaspiOS, customise.FormatSystemd, "declared by the catalogue"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			im := customisetest.Make(t, dir, tc.kind)
			s := sampleSettings()
			s.Format = tc.format
			c, err := customise.New(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, n, note, err := c.Locate(readHead(t, im.Path)); err != nil || n == 0 {
				t.Fatalf("locate: %v %s", err, note)
			}
			f := extract(t, im)
			changed, note, err := c.Apply(context.Background(), f, im.BootSize)
			if err != nil || !changed || !strings.Contains(note, "written for systemd ("+tc.why) {
				t.Fatalf("changed %v, note %q, error %v", changed, note, err)
			}
			fat := f.Name()
			if out, err := exec.Command(testenv.Tool(t, "fsck.vfat"), "-n", fat).CombinedOutput(); err != nil {
				t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
			}
			mtype := testenv.Tool(t, "mtype")
			script, err := exec.Command(mtype, "-i", fat, "::firstrun.sh").Output()
			if err != nil {
				t.Fatal(err)
			}
			cmdline, err := exec.Command(mtype, "-i", fat, "::cmdline.txt").Output()
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`^console=serial0,115200 .*rootwait quiet.* systemd\.run=/boot/firstrun\.sh systemd\.run_success_action=reboot systemd\.unit=kernel-command-line\.target\n$`).Match(cmdline) {
				t.Errorf("cmdline.txt: %q", cmdline)
			}
			sh := filepath.Join(t.TempDir(), "firstrun.sh")
			if err := os.WriteFile(sh, script, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(testenv.Tool(t, "sh"), "-n", sh).CombinedOutput(); err != nil {
				t.Fatalf("sh -n firstrun.sh: %v\n%s\n%s", err, out, script)
			}
			body := string(script)
			for _, want := range []string{
				"imager_custom set_hostname 'pi-kitchen'",
				"imager_custom enable_ssh -k '" + testKey + "'",
				"/usr/lib/userconf-pi/userconf 'alice' '$6$saltsalt$",
				"imager_custom set_keymap 'de'", "imager_custom set_timezone 'Europe/Berlin'",
				"rm -f /boot/firstrun.sh", "sed -i 's| systemd.run.*||g' /boot/cmdline.txt",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("firstrun.sh lacks %q:\n%s", want, body)
				}
			}
			if !regexp.MustCompile(`imager_custom set_wlan -h 'Kitchen Net' '[0-9a-f]{64}' 'DE'\n`).MatchString(body) {
				t.Errorf("firstrun.sh sets no Wi-Fi:\n%s", body)
			}
			if strings.Contains(body, "correct horse") {
				t.Error("the Wi-Fi passphrase is in firstrun.sh in clear")
			}
		})
	}
}

// The Wi-Fi key is the passphrase hashed as WPA does: IEEE 802.11i's test vector.
func TestFirstrunWPAKey(t *testing.T) {
	s := customise.Settings{WiFi: &recipe.WiFi{SSID: "IEEE", PSK: "password", Country: "GB"}}
	b, err := customise.RenderFirstrun(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := "'IEEE' 'f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e' 'GB'"; !strings.Contains(string(b), want) {
		t.Errorf("firstrun.sh lacks %s:\n%s", want, b)
	}
}

// Values reach the shell as given, whatever quotes they hold.
func TestFirstrunQuoting(t *testing.T) {
	key := testKey[:strings.LastIndex(testKey, " ")] + " bob's laptop; $(reboot) `x`"
	s := customise.Settings{Users: []recipe.User{{Name: "bob", SSHKeys: []string{key}}}}
	b, err := customise.RenderFirstrun(s)
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "enable_ssh -k ") {
			line = strings.TrimSpace(l)
		}
	}
	arg := strings.TrimPrefix(line, "/usr/lib/raspberrypi-sys-mods/imager_custom enable_ssh -k ")
	out, err := exec.Command(testenv.Tool(t, "sh"), "-c", "printf %s "+arg).Output()
	if err != nil || string(out) != key {
		t.Fatalf("the shell reads %q (%v), want %q", out, err, key)
	}
}

// Settings a firstrun.sh cannot carry are refused with a reason.
func TestFirstrunRefuses(t *testing.T) {
	s := sampleSettings()
	s.Users = append(s.Users, s.Users[0])
	s.Users[1].Name = "bob"
	if _, err := customise.RenderFirstrun(s); err == nil || !strings.Contains(err.Error(), "take one") {
		t.Errorf("two users: %v", err)
	}
	s = sampleSettings()
	s.UserData = []byte("#cloud-config\n")
	if _, err := customise.RenderFirstrun(s); err == nil || !strings.Contains(err.Error(), "cloud-init") {
		t.Errorf("user-data: %v", err)
	}
}
