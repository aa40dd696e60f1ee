package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/progress"
)

const testCatalogue = `{"imager": {"devices": [
  {"name": "Raspberry Pi 5", "tags": ["pi5-64bit"], "matching_type": "exclusive"},
  {"name": "Raspberry Pi 4", "tags": ["pi4-64bit"], "default": true}]},
 "os_list": [
  {"name": "Raspberry Pi OS Lite (64-bit)", "description": "No desktop", "url": "https://example.invalid/lite.img.xz",
   "extract_size": 2000000000, "extract_sha256": "57f1ba0d34dee2ee4fc2eb7f22c86dc5d2e30b2ba5bd0a3ac5c0e7dfcb40bc57",
   "image_download_sha256": "43d150e7901583919e4eb1f0fa83fe0363af2d1e9777a5bb707d696d535e2599",
   "release_date": "2024-11-19", "devices": ["pi5-64bit", "pi4-64bit"], "init_format": "cloudinit-rpi"},
  {"name": "Other", "subitems": [
   {"name": "Pi 4 bootloader", "url": "https://example.invalid/eeprom.zip", "devices": ["pi4-64bit"]},
   {"name": "Generic image", "url": "https://example.invalid/generic.img.gz"}]}]}`

// The Flash screen lists a catalogue by device with search, and choosing an image sets its URL
// and published checksums; a typed URL is an image too.
func TestFlashScreenCatalogue(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	src := filepath.Join(t.TempDir(), "os_list.json")
	if err := os.WriteFile(src, []byte(testCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	a.fa.Preferences().SetString("flash.catalogue", src)
	if err := a.Show("flash"); err != nil {
		t.Fatal(err)
	}
	fl := a.flash
	test.Tap(findButton(t, a, "Catalogue…"))
	settle(t, a)
	b := fl.picker.browser
	if b.cat == nil {
		t.Fatalf("catalogue not loaded: %q", b.status.Text)
	}
	if b.device.Selected != "Raspberry Pi 4" {
		t.Errorf("device %q, want the catalogue's default", b.device.Selected)
	}
	titles := func() string {
		var out []string
		for _, o := range b.shown {
			out = append(out, o.Name)
		}
		return strings.Join(out, "; ")
	}
	if got := titles(); got != "Raspberry Pi OS Lite (64-bit); Pi 4 bootloader; Generic image" {
		t.Errorf("Pi 4 lists %q", got)
	}
	b.device.SetSelected("Raspberry Pi 5")
	if got := titles(); got != "Raspberry Pi OS Lite (64-bit)" {
		t.Errorf("Pi 5 lists %q", got)
	}
	b.device.SetSelected(anyDevice)
	test.Type(b.search, "generic")
	if got := titles(); got != "Generic image" {
		t.Errorf("search lists %q", got)
	}
	b.search.SetText("")
	b.list.Select(0)
	if fl.image != "https://example.invalid/lite.img.xz" || fl.picker.info.ImageSHA256 == "" || fl.picker.info.Size != 2000000000 {
		t.Fatalf("chose %q with %+v", fl.image, fl.picker.info)
	}
	if !strings.Contains(fl.picker.label.Text, "Raspberry Pi OS Lite") || !strings.Contains(fl.picker.label.Text, "sha256") {
		t.Errorf("label %q", fl.picker.label.Text)
	}
	test.Tap(findCheck(t, a, "SanDisk Ultra Fit"))
	test.Tap(fl.flashBtn)
	if shown := texts(a); !strings.Contains(shown, "streamed from https://example.invalid/lite.img.xz") {
		t.Errorf("confirmation does not say where the image comes from:\n%s", shown)
	}
	test.Tap(findButton(t, a, "Cancel"))

	// A typed URL replaces the catalogue's choice and its checksums.
	fl.picker.url.SetText("https://example.invalid/mine.img")
	if fl.image != "https://example.invalid/mine.img" || fl.picker.info != (ImageInfo{}) {
		t.Errorf("typed URL: image %q info %+v", fl.image, fl.picker.info)
	}
	ctx := withImageInfo(context.Background(), ImageInfo{ImageSHA256: "x"})
	if imageInfoFrom(ctx).ImageSHA256 != "x" || imageInfoFrom(context.Background()) != (ImageInfo{}) {
		t.Error("image info does not reach the flash core")
	}
}

// An image picked from a catalogue is customised in the format its init_format declares; the
// user's explicit choice in the form wins.
func TestFlashCatalogueInitFormat(t *testing.T) {
	a, _, f, _, _ := newTestApp(t)
	src := filepath.Join(t.TempDir(), "os_list.json")
	if err := os.WriteFile(src, []byte(testCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	a.fa.Preferences().SetString("flash.catalogue", src)
	if err := a.Show("flash"); err != nil {
		t.Fatal(err)
	}
	fl := a.flash
	test.Tap(findButton(t, a, "Catalogue…"))
	settle(t, a)
	fl.picker.browser.list.Select(0)
	if fl.picker.info.InitFormat != "cloudinit-rpi" {
		t.Fatalf("picked %+v", fl.picker.info)
	}
	test.Tap(findCheck(t, a, "SanDisk Ultra Fit"))
	for _, c := range []struct{ chosen, want string }{{customise.FormatAuto, "cloudinit-rpi"}, {customise.FormatCloudInit, "cloudinit"}} {
		fl.custom.set(&customise.Settings{Hostname: "pi-hall", Format: c.chosen})
		test.Tap(fl.flashBtn)
		test.Tap(findButton(t, a, "Erase and flash"))
		settle(t, a)
		waitFor(t, func() bool { return !fl.flashBtn.Disabled() })
		f.mu.Lock()
		got := f.settings
		f.mu.Unlock()
		if got == nil || got.Hostname != "pi-hall" || got.Format != c.want {
			t.Fatalf("form format %q: the flash got %+v, want format %q", c.chosen, got, c.want)
		}
	}
	if fl.custom.settings.Format != customise.FormatCloudInit {
		t.Error("the form's settings were changed by the flash")
	}
}

func TestFlashScreenCatalogueError(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	a.fa.Preferences().SetString("flash.catalogue", filepath.Join(t.TempDir(), "missing.json"))
	a.Show("flash")
	test.Tap(findButton(t, a, "Catalogue…"))
	settle(t, a)
	if b := a.flash.picker.browser; b.cat != nil || !strings.Contains(b.status.Text, "Cannot read the catalogue") {
		t.Errorf("status %q", b.status.Text)
	}
}

func TestFlashRowShowsDownload(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	fl := a.flash
	fl.rows["/dev/sdb"] = &flashRow{bar: widget.NewProgressBar(), title: widget.NewLabel(""), state: widget.NewLabel("")}
	fl.showProgress(progress.Event{Phase: "writing", Device: "/dev/sdb", Done: 1 << 20, Total: 4 << 20,
		Message: "12 MB/s, 3s left · downloaded 310 MB of 1.2 GB"})
	if got := fl.rows["/dev/sdb"].state.Text; !strings.Contains(got, "downloaded 310 MB of 1.2 GB") || !strings.HasPrefix(got, "writing") {
		t.Errorf("row shows %q", got)
	}
}

// A Kiln server found on the LAN is offered as a catalogue source: one tap lists its images.
func TestCatalogueFromLANServer(t *testing.T) {
	a, _, f, _, _ := newTestApp(t)
	src := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(src, []byte(`{"os_list": [{"name": "kiln-tiny 1.0.0", "url": "http://127.0.0.1:1/images/kiln-tiny-1.0.0.img.zst", "init_format": "none"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f.LAN = src
	a.fa.Preferences().SetString("flash.catalogue", filepath.Join(t.TempDir(), "missing.json"))
	if err := a.Show("flash"); err != nil {
		t.Fatal(err)
	}
	test.Tap(findButton(t, a, "Catalogue…"))
	settle(t, a)
	b := a.flash.picker.browser
	waitFor(t, func() bool { return b.lan.Visible() })
	if b.lan.Text != "Kiln server on the LAN: desk" {
		t.Errorf("button %q", b.lan.Text)
	}
	test.Tap(b.lan)
	settle(t, a)
	waitFor(t, func() bool { return b.cat != nil })
	if b.source.Text != src || len(b.shown) != 1 || b.shown[0].Name != "kiln-tiny 1.0.0" {
		t.Fatalf("source %q lists %+v (%s)", b.source.Text, b.shown, b.status.Text)
	}
}
