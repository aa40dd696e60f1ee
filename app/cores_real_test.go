package app

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/internal/testimage"

	"github.com/kilnproject/kiln/internal/units"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"

	"github.com/kilnproject/kiln/internal/testenv"
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
		testenv.Missing(t, "qemu-system-x86_64 not installed")
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
	settle(t, a)
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
	for i := 0; ; i++ {
		ui.run()
		if lit() >= 100 {
			break
		}
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

// Publish and serve for real: the Serve screen publishes a build's update bundle into a signed
// repository, starts the update server on loopback, shows a device that reports to it, and stops it.
func TestServeRealServer(t *testing.T) {
	t.Setenv("KILN_KEYS", filepath.Join(t.TempDir(), "keys"))
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the device database
	a, _, _, _, _ := newTestApp(t)
	lg := logrus.New()
	lg.SetLevel(logrus.WarnLevel)
	a.fa.Preferences().SetString(prefOutDir, t.TempDir())
	a.cores.Serve = &realServe{st: &settings{prefs: a.fa.Preferences(), log: lg}}

	bundle := filepath.Join(t.TempDir(), "update")
	os.MkdirAll(bundle, 0o755)
	payload := []byte("a unified kernel image stands here")
	os.WriteFile(filepath.Join(bundle, "garden-1.1.0.efi"), payload, 0o644)
	os.WriteFile(filepath.Join(bundle, "update.json"), []byte(`{"name":"garden","version":"1.1.0","arch":"x86_64",
		"channel":"stable","min_from":"1.0.0","max_from":"","payload":{"file":"garden-1.1.0.efi"}}`), 0o644)
	a.setCurrent(&BuildResult{Name: "garden", Version: "1.1.0", UpdateDir: bundle, Size: int64(len(payload))})
	_ = a.Show("serve")
	s := a.serve

	// Starting with nothing published says what to do.
	s.addr.SetText("127.0.0.1:0")
	test.Tap(s.toggle)
	settle(t, a)
	if a.cores.Serve.Running() || !strings.Contains(texts(a), "publish a build first") {
		t.Fatalf("server started on an empty repository, or no advice:\n%s", texts(a))
	}
	a.win.Canvas().Overlays().Remove(a.win.Canvas().Overlays().Top())

	test.Tap(s.publishBtn)
	settle(t, a)
	if len(s.versions) != 1 || s.versions[0].Version != "1.1.0" || s.versions[0].MinFrom != "1.0.0" {
		t.Fatalf("published versions %+v", s.versions)
	}
	if got := s.versionCell(s.versions[0], 2); got != "1.0.0 … below 1.1.0" {
		t.Errorf("range cell %q", got)
	}

	test.Tap(s.toggle)
	settle(t, a)
	url, ok := strings.CutPrefix(s.status.Text, "Serving at ")
	if strings.Contains(url, "\n") {
		t.Errorf("status has a warning: %q", s.status.Text)
		url, _, _ = strings.Cut(url, "\n")
	}
	if !ok {
		t.Fatalf("status %q\n%s", s.status.Text, texts(a))
	}
	resp, err := http.Get(url + "/v1/info")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/info: %v %v", resp, err)
	}
	resp.Body.Close()
	pub, key, _ := ed25519.GenerateKey(nil)
	dev := ota.Device{ID: ota.DeviceID("garden-shed", pub), Key: ota.KeyString(pub), Name: "garden-shed", Version: "1.0.0"}
	c := &client.Client{BaseURL: url, Key: key}
	if err := c.Report(t.Context(), ota.Report{Device: dev, State: ota.StateDownloading, Target: "1.1.0"}); err != nil {
		t.Fatalf("signed report: %v", err)
	}
	s.refresh()
	if len(s.devices) != 1 || s.devices[0].Hostname != "garden-shed" || s.devices[0].State != "downloading" {
		t.Errorf("devices %+v", s.devices)
	}

	test.Tap(s.toggle)
	settle(t, a)
	if a.cores.Serve.Running() {
		t.Fatal("server still running after the toggle")
	}
	if _, err := http.Get(url + "/v1/info"); err == nil {
		t.Error("the server still answers after stopping")
	}

	// Started again, the server still knows the device.
	test.Tap(s.toggle)
	settle(t, a)
	if !a.cores.Serve.Running() {
		t.Fatalf("server did not start again:\n%s", texts(a))
	}
	s.refresh()
	if len(s.devices) != 1 || s.devices[0].Hostname != "garden-shed" || s.devices[0].State != "downloading" {
		t.Errorf("devices after a restart %+v", s.devices)
	}
	test.Tap(s.toggle)
	settle(t, a)
	if a.cores.Serve.Running() {
		t.Fatal("server still running after the second toggle")
	}
}

// A real build from the Build screen: the assembler makes the default image from the input cache;
// the result panel's size and SHA-256 are the file's, the manifest opens, and the Flash screen
// offers the new build first.
func TestBuildScreenRealBuild(t *testing.T) {
	cache, agent := testimage.Cache(t), testimage.Agent(t)
	t.Setenv("KILN_AGENT", agent)
	t.Setenv("KILN_KEYS", filepath.Join(t.TempDir(), "keys"))
	a, _, _, _, _ := newTestApp(t)
	out := t.TempDir()
	a.fa.Preferences().SetString(prefCacheDir, cache)
	a.fa.Preferences().SetString(prefOutDir, out)
	lg := logrus.New()
	lg.SetLevel(logrus.WarnLevel)
	a.cores.Build = &realBuild{st: &settings{prefs: a.fa.Preferences(), log: lg}}
	s := a.build
	s.onNew()
	s.hostname.SetText("app-test")
	if len(s.problems) != 0 {
		t.Fatalf("default recipe invalid in the form: %v", s.problems)
	}
	test.Tap(s.buildBtn)
	settle(t, a)
	if s.result == nil {
		t.Fatalf("no result: %s\n%s", s.status.Text, texts(a))
	}
	data, err := os.ReadFile(s.result.Image)
	if err != nil {
		t.Fatal(err)
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(data)); sum != s.resHash.Text {
		t.Errorf("result panel sha256 %s, file %s", s.resHash.Text, sum)
	}
	if s.resSize.Text != units.Binary(int64(len(data))) || !strings.HasPrefix(s.result.Image, out) {
		t.Errorf("size %q image %s", s.resSize.Text, s.result.Image)
	}
	test.Tap(findButton(t, a, "View manifest"))
	if shown := texts(a); !strings.Contains(shown, "Manifest — kiln-tiny") {
		t.Errorf("manifest viewer not shown:\n%s", shown)
	}
	a.win.Canvas().Overlays().Remove(a.win.Canvas().Overlays().Top())
	if bs := a.cores.Build.Builds(); len(bs) == 0 || bs[0].Image != s.result.Image {
		t.Errorf("Builds() = %+v", bs)
	}
	test.Tap(findButton(t, a, "Flash"))
	if a.flash.image != s.result.Image || !strings.HasPrefix(a.flash.picker.sel.Selected, "kiln-tiny 1.0.0") {
		t.Errorf("flash screen image %q selected %q", a.flash.image, a.flash.picker.sel.Selected)
	}
}

// A real flash from the Flash screen, as root, to a loop device attached while the screen is open
// and mounted under a temporary directory: the drive appears by itself, the confirmation names it
// and says its file system will be unmounted, the image is written and verified, and the device
// holds the image's bytes.
func TestFlashScreenRealLoopDevice(t *testing.T) {
	testenv.Tool(t, "mount")
	a, _, _, _, _ := newTestApp(t)
	lg := logrus.New()
	lg.SetLevel(logrus.WarnLevel)
	a.cores.Flash = &realFlash{st: &settings{prefs: a.fa.Preferences(), log: lg}}
	a.flash.start() // watch the real drives
	_ = a.Show("flash")

	dir := t.TempDir()
	img := filepath.Join(dir, "test.img")
	data := make([]byte, 3<<20+512)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	os.WriteFile(img, data, 0o644)
	dev := testenv.LoopDrive(t, 8<<20, true) // plugged in while the screen watches
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	var row string
	waitFor(t, func() bool {
		row = ""
		walk(a.win.Canvas().Content(), func(o fyne.CanvasObject) {
			if l, ok := o.(*widget.Label); ok && strings.HasPrefix(l.Text, dev+" ") {
				row = l.Text
			}
		})
		return row != ""
	})
	a.flash.setImage(img)
	var check *widget.Check
	for i, d := range a.flash.offered {
		if d.Path == dev {
			check = a.flash.devBox.Objects[i].(*fyne.Container).Objects[0].(*fyne.Container).Objects[0].(*widget.Check)
		}
	}
	if check == nil {
		t.Fatalf("%s not offered", dev)
	}
	test.Tap(check)
	test.Tap(a.flash.flashBtn)
	if !strings.Contains(texts(a), "("+dev+")") || !strings.Contains(texts(a), "mounted at "+mnt+": Kiln unmounts it first") {
		t.Fatalf("confirmation does not name %s and its mountpoint %s:\n%s", dev, mnt, texts(a))
	}
	test.Tap(findButton(t, a, "Erase and flash"))
	settle(t, a)
	r := a.flash.rows[dev]
	if r == nil || !strings.HasPrefix(r.state.Text, "Verified") {
		t.Fatalf("flash result: %+v\n%s", r, texts(a))
	}
	got := make([]byte, len(data))
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the device does not hold the image (%v)", err)
	}
}
