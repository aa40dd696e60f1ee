package app

import (
	"context"
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/catalog"
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

	// With remote images enabled (the Flash screen): an image URL, or an OS from a catalogue.
	url     *widget.Entry
	browse  *widget.Button // "Catalogue…"
	URLRow  fyne.CanvasObject
	info    ImageInfo // what the catalogue publishes about the chosen image
	browser *catalogueBrowser
}

// ImageInfo is what a catalogue publishes about an image: checksums of the download and of the
// uncompressed image, its size, and how it takes first-boot settings (init_format).
type ImageInfo struct {
	Name                        string
	DownloadSHA256, ImageSHA256 string
	Size                        int64
	InitFormat                  string
}

type imageInfoKey struct{}

// withImageInfo passes the chosen image's published checksums to the flash core.
func withImageInfo(ctx context.Context, info ImageInfo) context.Context {
	return context.WithValue(ctx, imageInfoKey{}, info)
}

// imageInfoFrom returns what withImageInfo stored, or the zero ImageInfo.
func imageInfoFrom(ctx context.Context) ImageInfo {
	info, _ := ctx.Value(imageInfoKey{}).(ImageInfo)
	return info
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

// enableRemote adds the URL entry and the catalogue browser (URLRow).
func (p *imagePicker) enableRemote() {
	p.url = widget.NewEntry()
	p.url.SetPlaceHolder("or an image URL: https://…/os.img.xz")
	p.url.OnSubmitted = func(s string) { p.setURL(s) }
	p.url.OnChanged = func(s string) {
		if isURL(s) {
			p.setURL(s)
		}
	}
	p.browse = widget.NewButtonWithIcon("Catalogue…", theme.ListIcon(), p.showCatalogue)
	p.URLRow = container.NewBorder(nil, nil, nil, p.browse, p.url)
}

func isURL(s string) bool {
	s = strings.TrimSpace(s)
	return (strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) && len(s) > len("https://x")
}

// setURL chooses an image URL typed by the user (no published checksum).
func (p *imagePicker) setURL(s string) {
	s = strings.TrimSpace(s)
	if !isURL(s) {
		return
	}
	p.info = ImageInfo{}
	p.set(s, s)
}

// setOS chooses an image from a catalogue.
func (p *imagePicker) setOS(o catalog.OS) {
	p.info = ImageInfo{Name: o.Name, DownloadSHA256: o.DownloadSHA256, ImageSHA256: o.ExtractSHA256, Size: o.ExtractSize,
		InitFormat: o.InitFormat}
	if p.url != nil && p.url.Text != o.URL {
		changed := p.url.OnChanged
		p.url.OnChanged = nil
		p.url.SetText(o.URL)
		p.url.OnChanged = changed
	}
	label := o.Title() + "\n" + o.URL
	if p.info.DownloadSHA256 != "" || p.info.ImageSHA256 != "" {
		label += "\nsha256 published: checked while writing"
	}
	p.set(o.URL, label)
}

// Set chooses path (selecting it in the list when it is one of the builds) and tells the screen.
func (p *imagePicker) Set(path string) {
	p.info = ImageInfo{}
	if p.url != nil && p.url.Text != "" && p.url.Text != path {
		changed := p.url.OnChanged
		p.url.OnChanged = nil
		p.url.SetText("")
		p.url.OnChanged = changed
	}
	p.set(path, path)
}

func (p *imagePicker) set(path, label string) {
	p.label.SetText(label)
	p.Refresh()
	for label, o := range p.opts {
		if o == path && p.sel.Selected != label {
			p.sel.SetSelected(label) // calls back into Set once, with the same path
			return
		}
	}
	p.onChanged(path)
}
