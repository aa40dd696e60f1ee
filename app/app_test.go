package app

import (
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// newTestApp opens the app on fake cores in Fyne's headless test driver, with a fixed size, theme
// and time zone so the goldens are stable.
func newTestApp(t *testing.T) (*App, *FakeBuild, *FakeFlash, *FakePreview, *FakeServe) {
	t.Helper()
	time.Local = time.UTC
	fa := test.NewTempApp(t)
	w := fa.NewWindow("Kiln")
	cores, b, f, p, s := FakeCores()
	a := New(fa, w, cores, "1.2.3")
	w.Resize(WindowSize)
	t.Cleanup(func() {
		a.Close()
		w.Close()
		ui.reset()
	})
	return a, b, f, p, s
}

// findButton returns the first visible button with the given text in the window or its top dialog.
func findButton(t *testing.T, a *App, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	visit := func(o fyne.CanvasObject) {
		walk(o, func(o fyne.CanvasObject) {
			if b, ok := o.(*widget.Button); ok && b.Text == text && b.Visible() && found == nil {
				found = b
			}
		})
	}
	if top := a.win.Canvas().Overlays().Top(); top != nil {
		visit(top)
	}
	if found == nil {
		visit(a.win.Canvas().Content())
	}
	if found == nil {
		t.Fatalf("no button %q on screen", text)
	}
	return found
}

// walk visits o and every object rendered under it.
func walk(o fyne.CanvasObject, f func(fyne.CanvasObject)) {
	if o == nil || !o.Visible() {
		return
	}
	f(o)
	switch x := o.(type) {
	case *fyne.Container:
		for _, c := range x.Objects {
			walk(c, f)
		}
	case fyne.Widget:
		for _, c := range test.WidgetRenderer(x).Objects() {
			walk(c, f)
		}
	}
}

// texts returns every label, check and button text visible on the canvas.
func texts(a *App) string {
	var b strings.Builder
	visit := func(o fyne.CanvasObject) {
		switch x := o.(type) {
		case *widget.Label:
			b.WriteString(x.Text + "\n")
		case *widget.Check:
			b.WriteString(x.Text + "\n")
		case *widget.Button:
			b.WriteString(x.Text + "\n")
		}
	}
	walk(a.win.Canvas().Content(), visit)
	for _, o := range a.win.Canvas().Overlays().List() {
		walk(o, visit)
	}
	return b.String()
}

func TestScreensMatchGoldens(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	for _, name := range screenNames {
		if err := a.Show(name); err != nil {
			t.Fatal(err)
		}
		test.AssertRendersToMarkup(t, "screen_"+name+".xml", a.win.Canvas())
		test.AssertRendersToImage(t, "screen_"+name+".png", a.win.Canvas())
	}
	if err := a.Show("nonsense"); err == nil {
		t.Error("Show accepted an unknown screen name")
	}
}

func TestBuildThenFlashWithConfirmation(t *testing.T) {
	a, _, f, _, _ := newTestApp(t)
	s := a.build
	s.name.SetText("kiln-tiny-garden")
	s.version.SetText("2.0.0")
	test.Tap(s.buildBtn)
	settle(t, a)
	if !s.resultBox.Visible() {
		t.Fatalf("no result after the build; status %q", s.status.Text)
	}
	if got := s.resImage.Text; !strings.HasSuffix(got, "/kiln-tiny-garden.img") {
		t.Errorf("result image = %q", got)
	}
	if s.resSize.Text != "512 MiB" || len(s.resHash.Text) != 64 {
		t.Errorf("result size %q, sha256 %q", s.resSize.Text, s.resHash.Text)
	}
	test.AssertRendersToMarkup(t, "build_result.xml", a.win.Canvas())
	test.AssertRendersToImage(t, "build_result.png", a.win.Canvas())

	test.Tap(findButton(t, a, "Flash"))
	if a.tabs.SelectedIndex() != 1 {
		t.Fatalf("the Flash button did not open the Flash screen")
	}
	fl := a.flash
	if fl.image != s.result.Image {
		t.Fatalf("flash image = %q, want the build %q", fl.image, s.result.Image)
	}
	if !fl.flashBtn.Disabled() {
		t.Fatal("Flash is enabled with no drive ticked: a target must never be chosen automatically")
	}
	check := findCheck(t, a, "SanDisk Ultra Fit")
	test.Tap(check)
	test.Tap(fl.flashBtn)

	// The confirmation names the model, the size and the current partitions.
	shown := texts(a)
	for _, want := range []string{"SanDisk Ultra Fit", "32.0 GB", "/dev/sdb", "sdb1", "PHOTOS", "vfat", "erased"} {
		if !strings.Contains(shown, want) {
			t.Errorf("confirmation does not mention %q:\n%s", want, shown)
		}
	}
	if len(f.Flashed) != 0 {
		t.Fatal("flashed before confirmation")
	}
	test.AssertRendersToImage(t, "flash_confirm.png", a.win.Canvas())
	test.Tap(findButton(t, a, "Erase and flash"))
	settle(t, a)
	if len(f.Flashed) != 1 || f.Flashed[0] != "/dev/sdb" {
		t.Fatalf("flashed %v, want [/dev/sdb]", f.Flashed)
	}
	row := fl.rows["/dev/sdb"]
	if !strings.HasPrefix(row.state.Text, "Verified") || row.bar.Value != 1 {
		t.Errorf("row shows %q at %.2f", row.state.Text, row.bar.Value)
	}
	if !strings.Contains(fl.summary.Text, "1 of 1") {
		t.Errorf("summary %q", fl.summary.Text)
	}
	test.AssertRendersToMarkup(t, "flash_done.xml", a.win.Canvas())
	test.AssertRendersToImage(t, "flash_done.png", a.win.Canvas())
}

func findCheck(t *testing.T, a *App, prefix string) *widget.Check {
	t.Helper()
	var found *widget.Check
	walk(a.win.Canvas().Content(), func(o fyne.CanvasObject) {
		if c, ok := o.(*widget.Check); ok && strings.HasPrefix(c.Text, prefix) && found == nil {
			found = c
		}
	})
	if found == nil {
		t.Fatalf("no drive %q offered", prefix)
	}
	return found
}

func TestSystemDriveNeverOffered(t *testing.T) {
	a, _, f, _, _ := newTestApp(t)
	_ = a.Show("flash")
	assertNoSystemDrive := func() {
		t.Helper()
		walk(a.win.Canvas().Content(), func(o fyne.CanvasObject) {
			if c, ok := o.(*widget.Check); ok && (strings.Contains(c.Text, "Samsung") || strings.Contains(c.Text, "nvme")) {
				t.Errorf("system drive offered: %q", c.Text)
			}
		})
	}
	assertNoSystemDrive()
	if !a.flash.whyNot.Visible() || !strings.Contains(a.flash.whyNot.Text, "why not") {
		t.Fatalf("no 'why not?' hint for the hidden drive")
	}
	test.Tap(a.flash.whyNot)
	if shown := texts(a); !strings.Contains(shown, "holds / (the running system)") {
		t.Errorf("the hint does not give the reason:\n%s", shown)
	}

	// Hot-plug: the list follows by itself, and a pulled drive loses its tick.
	f.Plug(Device{Path: "/dev/sdc", Vendor: "Kingston", Model: "DataTraveler", Bus: "usb", Size: 8e9, Removable: true})
	waitFor(t, func() bool { return strings.Contains(texts(a), "Kingston DataTraveler") })
	test.Tap(findCheck(t, a, "Kingston"))
	f.Unplug("/dev/sdc")
	waitFor(t, func() bool { return !strings.Contains(texts(a), "Kingston DataTraveler") })
	if a.flash.checked["/dev/sdc"] {
		t.Error("a pulled drive stays selected")
	}
	assertNoSystemDrive()
}

func TestServeToggleStartsAndStops(t *testing.T) {
	a, _, _, _, srv := newTestApp(t)
	_ = a.Show("serve")
	s := a.serve
	s.addr.SetText("127.0.0.1:18470")
	test.Tap(s.toggle)
	settle(t, a)
	if !srv.Running() || srv.Starts != 1 {
		t.Fatalf("server not started (running %v, starts %d)", srv.Running(), srv.Starts)
	}
	if !strings.Contains(s.status.Text, "http://127.0.0.1:18470/") {
		t.Errorf("status %q", s.status.Text)
	}
	if len(s.devices) != 2 {
		t.Errorf("devices table has %d rows", len(s.devices))
	}
	test.AssertRendersToMarkup(t, "serve_running.xml", a.win.Canvas())
	test.Tap(s.toggle)
	settle(t, a)
	if srv.Running() || srv.Stops != 1 {
		t.Fatalf("server not stopped (running %v, stops %d)", srv.Running(), srv.Stops)
	}
	if got := a.pref(prefServeAddr, ""); got != "127.0.0.1:18470" {
		t.Errorf("serve address not remembered: %q", got)
	}
}

func TestPublishCurrentBuild(t *testing.T) {
	a, _, _, _, srv := newTestApp(t)
	test.Tap(a.build.buildBtn)
	settle(t, a)
	test.Tap(findButton(t, a, "Publish"))
	settle(t, a)
	vs, _ := srv.Versions()
	if len(vs) != 1 || vs[0].Version != "1.0.0" {
		t.Fatalf("published %v", vs)
	}
	if len(a.serve.versions) != 1 || !strings.Contains(a.serve.current.Text, "Published kiln-tiny 1.0.0") {
		t.Errorf("serve screen shows %d versions, %q", len(a.serve.versions), a.serve.current.Text)
	}
}

func TestCancelMidBuild(t *testing.T) {
	a, b, _, _, _ := newTestApp(t)
	b.Gate = make(chan struct{})
	s := a.build
	test.Tap(s.buildBtn)
	b.Gate <- struct{}{} // the first step runs
	if s.cancelBtn.Disabled() || !s.buildBtn.Disabled() {
		t.Fatal("Cancel not offered during the build")
	}
	test.Tap(s.cancelBtn)
	settle(t, a)
	if !strings.Contains(s.status.Text, "cancelled") {
		t.Errorf("status %q", s.status.Text)
	}
	if s.resultBox.Visible() || len(b.Builds()) != 0 {
		t.Error("a cancelled build produced a result")
	}
	if s.buildBtn.Disabled() {
		t.Error("Build not offered again after cancelling")
	}
}

func TestValidationShownInline(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	s := a.build
	s.name.SetText("")
	s.hostname.SetText("bad_host")
	if !s.errs["name"].Visible() || !strings.Contains(s.errs["name"].Text, "required") {
		t.Errorf("name error %q", s.errs["name"].Text)
	}
	if !s.errs["hostname"].Visible() {
		t.Error("hostname error not shown")
	}
	if !s.buildBtn.Disabled() {
		t.Error("Build enabled on an invalid recipe")
	}
	test.AssertRendersToMarkup(t, "build_invalid.xml", a.win.Canvas())
	s.name.SetText("garden")
	s.hostname.SetText("garden")
	if s.errs["name"].Visible() || s.buildBtn.Disabled() {
		t.Error("errors stay after fixing the recipe")
	}
}

func TestPasswordStoredAsHash(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	s := a.build
	s.user.SetText("pi")
	s.password.SetText("raspberry")
	r := s.collect()
	if !strings.HasPrefix(r.PasswordHash, "$6$") || strings.Contains(r.PasswordHash, "raspberry") {
		t.Fatalf("password stored as %q", r.PasswordHash)
	}
	if again := s.collect(); again.PasswordHash != r.PasswordHash {
		t.Error("the hash changes on every read of the form")
	}
}

func TestPreviewShowsConsoleAndAccelerator(t *testing.T) {
	a, _, _, p, _ := newTestApp(t)
	a.preview.setImage("/tmp/x.img")
	a.preview.attach.SetSelected(attachUSB)
	test.Tap(a.preview.startBtn)
	settle(t, a)
	if len(p.Started) != 1 || !p.Started[0].AsUSB || p.Started[0].Firmware != "uefi" {
		t.Fatalf("started %+v", p.Started)
	}
	waitFor(t, func() bool { return strings.Contains(a.preview.console.Text(), "kiln: ready name=kiln-tiny") })
	if !strings.Contains(a.preview.accel.Text, "tcg") {
		t.Errorf("accelerator %q", a.preview.accel.Text)
	}
	waitFor(t, func() bool { return a.preview.screen.frame != nil && a.preview.screen.frame.Bounds().Dx() == 640 })
	test.Tap(a.preview.stopBtn)
	waitFor(t, func() bool { return a.preview.running() == nil })
}

func TestConsoleHandlesLineEndings(t *testing.T) {
	c := newConsole()
	c.Write([]byte("a\r\nb\x1b[1;32mgreen\x1b[0m\r\nprogress 10%\rprogress 99%\r\nx\by"))
	if got, want := c.Text(), "a\nbgreen\nprogress 99%\ny"; got != want {
		t.Errorf("console = %q, want %q", got, want)
	}
}
