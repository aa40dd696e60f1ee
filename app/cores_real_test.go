package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher"
)

// The form's recipe survives a save and a load through the recipe package, and what the form does
// not show (kernel, modules, update policy) is kept.
func TestRecipeFormRoundTrip(t *testing.T) {
	b := &realBuild{}
	f, err := b.New()
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := pwhash.Hash("s3cret")
	f.Name, f.Version, f.Hostname = "garden", "1.2.0", "garden"
	f.User, f.PasswordHash, f.SSHKeys = "pi", hash, []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILCTVR351yvy7L61ei9ZOGkfz7kIK3hsKi6mmvGK9xD+ me@laptop"}
	f.WifiSSID, f.WifiPSK, f.WifiCountry = "home", "correct horse", "GB"
	f.DiskSize, f.Timezone = "1GiB", "Europe/London"
	if errs := b.Validate(f); len(errs) != 0 {
		t.Fatalf("valid recipe reported as invalid: %v", errs)
	}
	path := filepath.Join(t.TempDir(), "garden.toml")
	if err := b.Save(f, path); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(path)
	if err != nil {
		t.Fatalf("saved recipe does not load: %v", err)
	}
	if r.Name != "garden" || r.System.Hostname != "garden" || r.Board.DiskSize != 1<<30 ||
		len(r.System.Users) != 1 || r.System.Users[0].PasswordHash != hash || r.System.WiFi.PSK != "correct horse" {
		t.Errorf("loaded %+v", r)
	}
	def := recipe.Default()
	if strings.Join(r.Kernel.Modules, ",") != strings.Join(def.Kernel.Modules, ",") || r.Update.Channel != def.Update.Channel {
		t.Error("fields the form does not show were lost")
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "s3cret") {
		t.Error("the clear-text password was saved")
	}
	back, err := b.Load(path)
	if err != nil || back.User != "pi" || back.WifiSSID != "home" || back.DiskSize != "1GiB" {
		t.Errorf("Load gave %+v, %v", back, err)
	}
}

// The recipe validator's problems land beside the form fields they concern.
func TestRecipeProblemsMapToFields(t *testing.T) {
	b := &realBuild{}
	f, _ := b.New()
	f.Name, f.Version, f.Hostname, f.DiskSize = "Bad Name", "one", "-bad-", "lots"
	got := map[string]string{}
	for _, e := range b.Validate(f) {
		got[formField(e.Field)] = e.Message
	}
	for _, field := range []string{"name", "version", "hostname", "disk"} {
		if got[field] == "" {
			t.Errorf("no message for %s (got %v)", field, got)
		}
	}
}

// Every flasher error state gets specific advice.
func TestFlashAdviceForEverySentinel(t *testing.T) {
	f := &realFlash{}
	generic := f.Advice(os.ErrClosed)
	for _, e := range []error{flasher.ErrTooSmall, flasher.ErrBusy, flasher.ErrReadOnly, flasher.ErrIdentityChanged,
		flasher.ErrRemoved, flasher.ErrPermission, flasher.ErrVerify, flasher.ErrIncomplete, flasher.ErrSource,
		flasher.ErrSystemDrive, flasher.ErrInternal, flasher.ErrImageOnDevice, flasher.ErrNotBlockDevice} {
		if a := f.Advice(e); a == generic || a == "" {
			t.Errorf("no specific advice for %v", e)
		}
	}
}
