package app

import (
	"fmt"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/internal/units"
)

// imagePicker chooses the image a screen works on: one of Kiln's builds from a list, newest
// first, or any file through "Other file…". The Flash and Preview screens each have one.
type imagePicker struct {
	a         *App
	exts      []string          // the file dialog's filter
	onChanged func(path string) // called on the UI thread with the chosen image
	opts      map[string]string // option label → image path
	sel       *widget.Select    // the builds
	pick      *widget.Button    // "Other file…"
	label     *widget.Label     // the chosen path ("No image chosen." until then)
	Row       fyne.CanvasObject // the list with the button at its right, for the screen's layout
}

func newImagePicker(a *App, exts []string, onChanged func(path string)) *imagePicker {
	p := &imagePicker{a: a, exts: exts, onChanged: onChanged, opts: map[string]string{}}
	p.sel = widget.NewSelect(nil, p.onSelected)
	p.sel.PlaceHolder = "Choose one of your builds"
	p.pick = widget.NewButtonWithIcon("Other file…", theme.FolderOpenIcon(), func() { a.pickFile(p.exts, p.Set) })
	p.label = widget.NewLabel("No image chosen.")
	p.Row = container.NewBorder(nil, nil, nil, p.pick, p.sel)
	return p
}

// Refresh lists Kiln's builds again, so a fresh build shows up.
func (p *imagePicker) Refresh() {
	p.opts = map[string]string{}
	var opts []string
	for _, b := range p.a.cores.Build.Builds() {
		label := fmt.Sprintf("%s %s — %s", b.Name, b.Version, units.Binary(b.Size))
		p.opts[label] = b.Image
		opts = append(opts, label)
	}
	p.sel.SetOptions(opts)
}

func (p *imagePicker) onSelected(label string) {
	if path, ok := p.opts[label]; ok {
		p.Set(path)
	}
}

// Set chooses path (selecting it in the list when it is one of the builds) and tells the screen.
func (p *imagePicker) Set(path string) {
	p.label.SetText(path)
	p.Refresh()
	for label, o := range p.opts {
		if o == path && p.sel.Selected != label {
			p.sel.SetSelected(label) // calls back into Set once, with the same path
			return
		}
	}
	p.onChanged(path)
}
