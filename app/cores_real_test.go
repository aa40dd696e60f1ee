package app

import (
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"github.com/sirupsen/logrus"

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

// The Preview screen boots a real QEMU through vmrunner and shows the guest's screen from the VNC
// socket (a blank disk under SeaBIOS: the BIOS banner and "No bootable device").
func TestPreviewRealVM(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-x86_64 is required under CI")
		}
		t.Skip("qemu-system-x86_64 not installed")
	}
	a, _, _, _, _ := newTestApp(t)
	lg := logrus.New()
	lg.SetLevel(logrus.WarnLevel)
	a.cores.Preview = &realPreview{st: &settings{prefs: a.fa.Preferences(), log: lg}}
	// A 1 MiB disk with an MBR partition table and no boot code.
	mbr := make([]byte, 1<<20)
	copy(mbr[446:], []byte{0, 0, 0, 0, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0xff, 0x07, 0, 0})
	mbr[510], mbr[511] = 0x55, 0xaa
	disk := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(disk, mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	p := a.preview
	p.setImage(disk)
	p.firmware.SetSelected(fwBIOS)
	test.Tap(p.startBtn)
	a.Wait()
	vm := p.running()
	if vm == nil {
		t.Fatalf("VM not running: %s\n%s", p.status.Text, texts(a))
	}
	if vm.VNCSocket() == "" {
		t.Error("no VNC socket: the screen falls back to screendumps")
	}
	if !strings.HasPrefix(p.accel.Text, "Accelerator: ") || len(p.accel.Text) < 20 {
		t.Errorf("accelerator line %q", p.accel.Text)
	}
	lit := func() int {
		img, ok := p.screen.frame.(*image.RGBA)
		if !ok {
			return 0
		}
		n := 0
		for i := 0; i < len(img.Pix); i += 4 {
			if img.Pix[i] > 0x40 || img.Pix[i+1] > 0x40 || img.Pix[i+2] > 0x40 {
				n++
			}
		}
		return n
	}
	for i := 0; lit() < 100; i++ {
		if i > 1200 {
			t.Fatal("the guest screen did not appear within 120 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = a.Show("preview")
	if f, err := os.Create(filepath.Join(os.TempDir(), "kiln-preview-real-vm.png")); err == nil {
		png.Encode(f, a.win.Canvas().Capture())
		f.Close()
	}
	test.Tap(p.stopBtn)
	select {
	case <-vm.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU did not stop")
	}
	waitFor(t, func() bool { return p.running() == nil })
}
