package app

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/kilnproject/kiln/app/pwhash"
)

const formKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0eJ7GpKx6ZQm4R4Hc0m2lJ7c4yO7nQ6Xh0b2J5s9B alice@laptop"

// TestFlashWithFirstBootSettings: the Flash screen's Customise… form refuses bad settings inline,
// keeps good ones (the password only as its hash), shows them, and the flash carries them; the
// drive's row says what was written.
func TestFlashWithFirstBootSettings(t *testing.T) {
	a, _, f, _, _ := newTestApp(t)
	if err := a.Show("flash"); err != nil {
		t.Fatal(err)
	}
	fl := a.flash
	fl.picker.Set("/images/ubuntu-24.04-preinstalled-server-arm64+raspi.img.xz")
	if !strings.Contains(fl.custom.label.Text, "written as it is") {
		t.Fatalf("summary before customising: %q", fl.custom.label.Text)
	}
	test.Tap(findButton(t, a, "Customise…"))
	form := fl.custom.form
	save := findButton(t, a, "Use these settings")
	form.hostname.SetText("pi-kitchen")
	form.user.SetText("alice")
	form.password.SetText("s3cret")
	form.sshKeys.SetText(formKey)
	form.wifiSSID.SetText("Kitchen Net")
	form.wifiPSK.SetText("short")
	form.wifiCountry.SetText("de")
	form.keyboard.SetText("de")
	if !save.Disabled() || !form.problems.Visible() || !strings.Contains(form.problems.Text, "PSK of 5 characters") {
		t.Fatalf("a 5-character PSK is accepted: save disabled %v, problems %q", save.Disabled(), form.problems.Text)
	}
	if strings.Contains(form.problems.Text, "short") {
		t.Fatalf("the problem shows the PSK: %q", form.problems.Text)
	}
	form.wifiPSK.SetText("correct horse battery")
	if save.Disabled() {
		t.Fatalf("valid settings refused: %q", form.problems.Text)
	}
	test.AssertRendersToImage(t, "flash_customise.png", a.win.Canvas())
	test.Tap(save)
	for _, want := range []string{"hostname pi-kitchen", "user alice with 1 SSH key", "Wi-Fi Kitchen Net", "keyboard de"} {
		if !strings.Contains(fl.custom.label.Text, want) {
			t.Errorf("summary %q lacks %q", fl.custom.label.Text, want)
		}
	}
	test.Tap(findCheck(t, a, "SanDisk Ultra Fit"))
	test.Tap(fl.flashBtn)
	if shown := texts(a); !strings.Contains(shown, "First-boot settings (cloud-init images): hostname pi-kitchen") {
		t.Errorf("the confirmation does not name the settings:\n%s", shown)
	}
	test.Tap(findButton(t, a, "Erase and flash"))
	settle(t, a)
	f.mu.Lock()
	got := f.settings
	f.mu.Unlock()
	if got == nil || got.Hostname != "pi-kitchen" || got.WiFi == nil || got.WiFi.Country != "DE" || len(got.Users) != 1 {
		t.Fatalf("the flash got settings %+v", got)
	}
	h := got.Users[0].PasswordHash
	if ok, _ := regexp.MatchString(`^\$6\$`, h); !ok {
		t.Fatalf("password passed as %q, not a hash", h)
	}
	if again, err := pwhash.Crypt("s3cret", h); err != nil || again != h {
		t.Fatalf("the hash is not of the password typed")
	}
	if row := fl.rows["/dev/sdb"]; !strings.Contains(row.state.Text, "first-boot settings written") {
		t.Errorf("the row does not say the settings were written: %q", row.state.Text)
	}

	// Clear drops them: the next flash writes the image as it is.
	test.Tap(findButton(t, a, "Customise…"))
	if fl.custom.form.hostname.Text != "pi-kitchen" || fl.custom.form.password.Text != "" {
		t.Fatalf("the form did not reopen with the settings (password never shown): %q", fl.custom.form.hostname.Text)
	}
	test.Tap(findButton(t, a, "Clear"))
	if fl.custom.settings != nil || !strings.Contains(fl.custom.label.Text, "written as it is") {
		t.Fatalf("Clear kept %+v", fl.custom.settings)
	}
}

// TestSettingsFromRecipe: the same settings as the Build screen's recipe can be taken over.
func TestSettingsFromRecipe(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	a.build.hostname.SetText("garden")
	a.build.user.SetText("gardener")
	a.build.sshKeys.SetText(formKey)
	a.build.wifiSSID.SetText("Shed")
	a.build.wifiPSK.SetText("potting-soil")
	if err := a.Show("flash"); err != nil {
		t.Fatal(err)
	}
	test.Tap(findButton(t, a, "Customise…"))
	test.Tap(findButton(t, a, "From the recipe"))
	test.Tap(findButton(t, a, "Use these settings"))
	s := a.flash.custom.settings
	if s == nil || s.Hostname != "garden" || s.Users[0].Name != "gardener" || s.Users[0].SSHKeys[0] != formKey || s.WiFi.SSID != "Shed" {
		t.Fatalf("settings from the recipe: %+v", s)
	}
}

// TestKeyFileButton: a .pub file's keys are appended to the SSH keys field; a private key is refused
// with a message, the field untouched.
func TestKeyFileButton(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	dir := t.TempDir()
	pub, priv := filepath.Join(dir, "id.pub"), filepath.Join(dir, "id")
	os.WriteFile(pub, []byte("# desk\n"+formKey+"\n"), 0o644)
	os.WriteFile(priv, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n"), 0o600)
	a.build.sshKeys.SetText("")
	a.build.addKeyFile(pub)
	if a.build.sshKeys.Text != formKey {
		t.Fatalf("SSH keys field: %q", a.build.sshKeys.Text)
	}
	a.build.addKeyFile(priv)
	if a.build.sshKeys.Text != formKey || !strings.Contains(texts(a), "Not a public key") {
		t.Fatalf("a private key was taken or not refused clearly: %q\n%s", a.build.sshKeys.Text, texts(a))
	}
}
