package app

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/units"
)

// imageExtensions are the files the image picker offers (raw and compressed images).
var imageExtensions = []string{".img", ".raw", ".iso", ".bin", ".gz", ".xz", ".zst", ".bz2", ".zip"}

// flashScreen writes an image to one or more removable drives.
type flashScreen struct {
	a       *App
	content fyne.CanvasObject

	image  string
	picker *imagePicker
	custom *customiseRow // first-boot settings for cloud-init images

	offered  []Device
	hidden   []HiddenDevice
	checked  map[string]bool
	devBox   *fyne.Container
	whyNot   *widget.Button
	flashBtn *widget.Button
	stopBtn  *widget.Button
	cancel   context.CancelFunc

	rows    map[string]*flashRow
	rowsBox *fyne.Container
	summary *widget.Label

	onFinished func() // called on the UI thread after a flash ends (used by the demo mode)
}

// flashRow shows one device's progress and result.
type flashRow struct {
	bar          *widget.ProgressBar
	title, state *widget.Label
	phase        string
	phaseStart   time.Time
}

func newFlashScreen(a *App) *flashScreen {
	s := &flashScreen{a: a, checked: map[string]bool{}, rows: map[string]*flashRow{}}

	s.picker = newImagePicker(a, imageExtensions, func(path string) {
		s.image = path
		s.updateButton()
	})
	s.picker.label.Wrapping = fyne.TextWrapBreak
	s.picker.enableRemote()
	s.custom = newCustomiseRow(a)
	imageCard := card("1. Image", "A Kiln build, any disk image (.img, .img.xz, .zst, .gz, .zip …), a URL, or an OS from a catalogue",
		container.NewVBox(s.picker.Row, s.picker.URLRow, s.picker.label, s.custom.row))

	s.devBox = container.NewVBox()
	s.whyNot = widget.NewButtonWithIcon("", theme.QuestionIcon(), s.onWhyNot)
	s.whyNot.Importance = widget.LowImportance
	s.whyNot.Hide()
	devCard := card("2. Drives", "Plug in a USB stick or SD card: the list updates by itself",
		container.NewVBox(s.devBox, container.NewHBox(s.whyNot)))

	s.flashBtn = widget.NewButtonWithIcon("Flash", theme.UploadIcon(), s.onFlash)
	s.flashBtn.Importance = widget.HighImportance
	s.flashBtn.Disable()
	s.stopBtn = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), s.onCancel)
	s.stopBtn.Disable()
	s.rowsBox = container.NewVBox()
	s.summary = widget.NewLabel("Choose an image and at least one drive.")
	s.summary.Wrapping = fyne.TextWrapWord
	runCard := card("3. Flash", "Writes the image, then reads every drive back to verify it",
		container.NewVBox(container.NewGridWithColumns(2, s.flashBtn, s.stopBtn), s.summary, s.rowsBox))

	left := container.NewVBox(imageCard, devCard)
	split := container.NewHSplit(container.NewVScroll(left), container.NewVScroll(runCard))
	split.SetOffset(0.5)
	s.content = container.NewBorder(heading("Flash a drive"), nil, nil, nil, split)
	return s
}

// start lists the drives and keeps the list current while the app runs.
func (s *flashScreen) start() {
	s.picker.Refresh()
	s.refreshDevices()
	changes := s.a.cores.Flash.Changes(s.a.ctx)
	s.a.watch(func() {
		for {
			select {
			case <-s.a.ctx.Done():
				return
			case _, ok := <-changes:
				if !ok {
					return
				}
				s.refreshDevicesAsync()
			}
		}
	})
}

// setImage chooses the image to write.
func (s *flashScreen) setImage(path string) { s.picker.Set(path) }

// refreshDevicesAsync lists drives in the background and shows them.
func (s *flashScreen) refreshDevicesAsync() {
	offered, hidden, err := s.a.cores.Flash.Devices(s.a.ctx)
	onUI(func() { s.showDevices(offered, hidden, err) })
}

// refreshDevices lists drives now (on the UI thread at start-up: enumeration reads sysfs only).
func (s *flashScreen) refreshDevices() {
	offered, hidden, err := s.a.cores.Flash.Devices(s.a.ctx)
	s.showDevices(offered, hidden, err)
}

func (s *flashScreen) showDevices(offered []Device, hidden []HiddenDevice, err error) {
	s.devBox.RemoveAll()
	if err != nil {
		l := widget.NewLabel("Cannot list drives: " + err.Error())
		l.Importance = widget.DangerImportance
		l.Wrapping = fyne.TextWrapWord
		s.devBox.Add(l)
	}
	sort.Slice(offered, func(i, j int) bool { return offered[i].Path < offered[j].Path })
	s.offered, s.hidden = offered, hidden
	present := map[string]bool{}
	for _, d := range offered {
		present[d.Path] = true
		c := widget.NewCheck(deviceTitle(d), nil)
		c.SetChecked(s.checked[d.Path])
		path := d.Path
		c.OnChanged = func(on bool) { s.onDeviceToggled(path, on) }
		detail := widget.NewLabel(deviceDetail(d))
		detail.Importance = widget.LowImportance
		s.devBox.Add(container.NewBorder(nil, nil, widget.NewIcon(deviceIcon(d)), nil,
			container.NewVBox(c, detail)))
	}
	for p := range s.checked {
		if !present[p] {
			delete(s.checked, p) // a pulled drive is never flashed when it comes back
		}
	}
	if len(offered) == 0 && err == nil {
		l := widget.NewLabelWithStyle("No removable drive found. Plug in a USB stick or an SD card.",
			fyne.TextAlignLeading, fyne.TextStyle{Italic: true})
		l.Wrapping = fyne.TextWrapWord
		s.devBox.Add(l)
	}
	if len(hidden) > 0 {
		s.whyNot.SetText(count(len(hidden), "system or internal drive") + " not offered — why not?")
		s.whyNot.Show()
	} else {
		s.whyNot.Hide()
	}
	s.updateButton()
}

func deviceTitle(d Device) string {
	name := strings.TrimSpace(d.Vendor + " " + d.Model)
	if name == "" {
		name = "Unnamed drive"
	}
	return fmt.Sprintf("%s — %s", name, units.Decimal(d.Size))
}

func deviceDetail(d Device) string {
	parts := []string{d.Path}
	if d.Bus != "" {
		parts = append(parts, strings.ToUpper(d.Bus))
	}
	if n := len(d.Partitions); n > 0 {
		parts = append(parts, count(n, "partition"))
	}
	return strings.Join(parts, " · ")
}

func deviceIcon(d Device) fyne.Resource {
	if d.Bus == "mmc" {
		return theme.StorageIcon()
	}
	return theme.UploadIcon()
}

func (s *flashScreen) onDeviceToggled(path string, on bool) {
	if on {
		s.checked[path] = true
	} else {
		delete(s.checked, path)
	}
	s.updateButton()
}

func (s *flashScreen) selected() []Device {
	var out []Device
	for _, d := range s.offered {
		if s.checked[d.Path] {
			out = append(out, d)
		}
	}
	return out
}

func (s *flashScreen) updateButton() {
	busy := s.cancel != nil
	n := len(s.selected())
	switch {
	case busy:
		s.flashBtn.Disable()
		return
	case s.image == "":
		s.summary.SetText("Choose an image to write.")
	case n == 0:
		s.summary.SetText("Tick at least one drive.")
	default:
		s.summary.SetText(fmt.Sprintf("Ready to write %s to %s.", filepath.Base(s.image), count(n, "drive")))
	}
	if s.image != "" && n > 0 {
		s.flashBtn.SetText("Flash " + count(n, "drive"))
		s.flashBtn.Enable()
	} else {
		s.flashBtn.SetText("Flash")
		s.flashBtn.Disable()
	}
}

func (s *flashScreen) onWhyNot() {
	var b strings.Builder
	b.WriteString("Kiln never offers a drive it could break your computer with:\n\n")
	for _, h := range s.hidden {
		fmt.Fprintf(&b, "• %s (%s, %s): %s\n", deviceTitle(h.Device), h.Path, strings.ToUpper(h.Bus), h.Reason)
	}
	b.WriteString("\nDrives that hold the running system, are mounted by it, or are internal disks are hidden. " +
		"To write to an internal disk on purpose, use `kiln flash --allow-internal` in a terminal.")
	l := widget.NewLabel(b.String())
	l.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustom("Why are some drives not offered?", "Got it", l, s.a.win)
	d.Resize(fyne.NewSize(560, 320))
	d.Show()
}

// onFlash asks for confirmation naming every drive and what it holds.
func (s *flashScreen) onFlash() {
	devs := s.selected()
	if s.image == "" || len(devs) == 0 || s.cancel != nil {
		return
	}
	devs = s.current(devs)
	var b strings.Builder
	if s.picker.info.Name != "" {
		fmt.Fprintf(&b, "%s (%s)", s.picker.info.Name, filepath.Base(s.image))
	} else {
		b.WriteString(filepath.Base(s.image))
	}
	if isURL(s.image) {
		fmt.Fprintf(&b, ", streamed from %s,", s.image)
	}
	b.WriteString(" will be written to:\n")
	for _, d := range devs {
		fmt.Fprintf(&b, "\n• %s (%s)\n", deviceTitle(d), d.Path)
		if len(d.Partitions) == 0 {
			b.WriteString("    no partitions\n")
		}
		for _, p := range d.Partitions {
			label := p.Label
			if label == "" {
				label = "no label"
			}
			fmt.Fprintf(&b, "    %s  %s  %s  %s\n", p.Name, label, p.FSType, units.Decimal(p.Size))
		}
		if len(d.Mounts) > 0 {
			fmt.Fprintf(&b, "    mounted at %s: Kiln unmounts it first\n", strings.Join(d.Mounts, ", "))
		}
	}
	if s.custom.settings != nil {
		b.WriteString("\n" + settingsSummary(s.custom.settings) + "\n")
	}
	b.WriteString("\nEverything on these drives will be erased.")
	l := widget.NewLabel(b.String())
	l.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustomConfirm("Erase and flash?", "Erase and flash", "Cancel", l, func(ok bool) {
		if ok {
			s.flash(devs)
		}
	}, s.a.win)
	d.Resize(fyne.NewSize(520, 200+float32(40*len(devs))))
	d.Show()
}

// current returns the drives as they are now: a file system mounted since the list was drawn is
// named in the confirmation. (Enumeration reads sysfs only, so this runs on the UI thread.)
func (s *flashScreen) current(devs []Device) []Device {
	now, _, err := s.a.cores.Flash.Devices(s.a.ctx)
	if err != nil {
		return devs
	}
	out := make([]Device, len(devs))
	for i, d := range devs {
		out[i] = d
		for _, n := range now {
			if n.Path == d.Path {
				out[i] = n
			}
		}
	}
	return out
}

// flash starts writing in the background.
func (s *flashScreen) flash(devs []Device) {
	ctx, cancel := context.WithCancel(s.a.ctx)
	s.cancel = cancel
	s.flashBtn.Disable()
	s.stopBtn.Enable()
	s.rowsBox.RemoveAll()
	s.rows = map[string]*flashRow{}
	var paths []string
	for _, d := range devs {
		r := &flashRow{bar: widget.NewProgressBar(), title: widget.NewLabelWithStyle(deviceTitle(d)+" · "+d.Path,
			fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), state: widget.NewLabel("waiting")}
		r.state.Wrapping = fyne.TextWrapWord
		s.rows[d.Path] = r
		s.rowsBox.Add(container.NewVBox(r.title, r.bar, r.state))
		paths = append(paths, d.Path)
	}
	s.summary.SetText(fmt.Sprintf("Flashing %s… Do not unplug them.", count(len(devs), "drive")))
	img, set := s.image, s.custom.settings
	if f := s.picker.info.InitFormat; set != nil && set.Format == customise.FormatAuto && customise.KnownFormat(f) {
		// The catalogue says how the image takes settings: no need to guess from its files.
		declared := *set
		declared.Format = f
		set = &declared
	}
	ctx = withImageInfo(ctx, s.picker.info)
	bridge := NewBridge(s.showProgress)
	s.a.background(func() {
		res, err := flashWith(s.a.cores.Flash, ctx, img, paths, set, bridge.Func())
		bridge.Close()
		onUI(func() { s.finished(res, err) })
	})
}

func (s *flashScreen) onCancel() {
	if s.cancel != nil {
		s.cancel()
		s.stopBtn.Disable()
		s.summary.SetText("Cancelling… the drives will need to be flashed again.")
	}
}

// showProgress runs on the UI thread (through the bridge).
func (s *flashScreen) showProgress(e progress.Event) {
	r := s.rows[e.Device]
	if r == nil {
		return
	}
	now := time.Now()
	if e.Phase != r.phase {
		r.phase, r.phaseStart = e.Phase, now
	}
	if e.Total > 0 {
		r.bar.SetValue(float64(e.Done) / float64(e.Total))
	}
	text := e.Phase
	if el := now.Sub(r.phaseStart); el > 500*time.Millisecond && e.Done > 0 {
		rate := float64(e.Done) / el.Seconds()
		text += fmt.Sprintf(" · %s/s", units.Binary(int64(rate)))
		if e.Total > e.Done && rate > 0 {
			text += " · " + formatDuration(time.Duration(float64(e.Total-e.Done)/rate*float64(time.Second))) + " left"
		}
	}
	if e.Total > 0 {
		text += fmt.Sprintf(" · %s of %s", units.Binary(e.Done), units.Binary(e.Total))
	}
	if i := strings.Index(e.Message, "downloaded "); i >= 0 { // a URL image: the download's progress
		text += " · " + e.Message[i:]
	}
	r.state.SetText(text)
}

// finished shows each drive's result; it runs on the UI thread.
func (s *flashScreen) finished(res []FlashResult, err error) {
	s.cancel = nil
	s.stopBtn.Disable()
	s.updateButton()
	ok := 0
	for _, r := range res {
		row := s.rows[r.Device]
		if row == nil {
			continue
		}
		switch {
		case r.Err != nil:
			row.state.SetText("Failed: " + r.Err.Error() + " " + s.a.cores.Flash.Advice(r.Err))
			row.state.Importance = widget.DangerImportance
			row.state.Wrapping = fyne.TextWrapWord
			row.state.Refresh()
		case r.Verified:
			ok++
			row.bar.SetValue(1)
			row.state.SetText(strings.TrimSpace(fmt.Sprintf("Verified ✓ — %s written and read back in %s. You can remove the drive.\n%s",
				units.Binary(r.Written), formatDuration(r.Elapsed), r.Note)))
			row.state.Importance = widget.SuccessImportance
			row.state.Refresh()
		default:
			row.state.SetText(fmt.Sprintf("Written (%s), not verified.", units.Binary(r.Written)))
		}
	}
	switch {
	case errCancelled(err):
		s.summary.SetText("Cancelled. The drives hold an incomplete image: flash them again before use.")
	case err != nil:
		s.summary.SetText("Flashing failed.")
		s.a.showError("Flashing failed", err, s.a.cores.Flash.Advice(err))
	default:
		s.summary.SetText(fmt.Sprintf("Done: %d of %s written and verified.", ok, count(len(res), "drive")))
	}
	if s.onFinished != nil {
		s.onFinished()
	}
}
