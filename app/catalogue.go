package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/internal/units"
)

const anyDevice = "Any device"

// catalogueBrowser lists an OS catalogue (Raspberry Pi Imager's format) by device, with search;
// choosing an image sets the picker to its URL and published checksums.
type catalogueBrowser struct {
	p       *imagePicker
	source  *widget.Entry
	load    *widget.Button
	lan     *widget.Button // "Kiln server on the LAN", shown once one is found
	device  *widget.Select
	search  *widget.Entry
	status  *widget.Label
	list    *widget.List
	dlg     dialog.Dialog
	cat     *catalog.Catalog
	shown   []catalog.OS
	devices map[string]string // option label → device name
}

func (p *imagePicker) showCatalogue() {
	if p.browser == nil {
		p.browser = newCatalogueBrowser(p)
	}
	p.browser.dlg.Show()
	if p.browser.cat == nil {
		p.browser.reload()
		p.browser.findLAN()
	}
}

// lanCatalogues is a FlashCore that finds Kiln update servers on the LAN, whose catalogues list
// their published disk images.
type lanCatalogues interface {
	LANCatalogue(ctx context.Context) (name, url string, err error)
}

// findLAN looks for a Kiln server on the LAN in the background and offers its catalogue.
func (b *catalogueBrowser) findLAN() {
	f, ok := b.p.a.cores.Flash.(lanCatalogues)
	if !ok {
		return
	}
	b.p.a.background(func() {
		ctx, cancel := context.WithTimeout(b.p.a.ctx, 5*time.Second)
		defer cancel()
		name, src, err := f.LANCatalogue(ctx)
		if err != nil || src == "" {
			return
		}
		onUI(func() {
			b.lan.SetText("Kiln server on the LAN: " + name)
			b.lan.OnTapped = func() { b.source.SetText(src); b.reload() }
			b.lan.Show()
		})
	})
}

func newCatalogueBrowser(p *imagePicker) *catalogueBrowser {
	b := &catalogueBrowser{p: p, devices: map[string]string{}}
	b.source = widget.NewEntry()
	b.source.SetText(p.a.pref("flash.catalogue", catalog.ImagerURL))
	b.source.OnSubmitted = func(string) { b.reload() }
	b.load = widget.NewButtonWithIcon("Load", theme.ViewRefreshIcon(), b.reload)
	b.lan = widget.NewButtonWithIcon("", theme.ComputerIcon(), nil)
	b.lan.Hide()
	b.device = widget.NewSelect([]string{anyDevice}, func(string) { b.filter() })
	b.device.SetSelected(anyDevice)
	b.search = widget.NewEntry()
	b.search.SetPlaceHolder("Search")
	b.search.OnChanged = func(string) { b.filter() }
	b.status = widget.NewLabel("")
	b.status.Wrapping = fyne.TextWrapWord
	b.list = widget.NewList(func() int { return len(b.shown) },
		func() fyne.CanvasObject {
			return container.NewVBox(widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
				widget.NewLabel(""))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(b.shown) {
				return
			}
			os := b.shown[i]
			box := o.(*fyne.Container)
			box.Objects[0].(*widget.Label).SetText(os.Title())
			box.Objects[1].(*widget.Label).SetText(osDetail(os))
		})
	b.list.OnSelected = func(i widget.ListItemID) {
		if i < len(b.shown) {
			b.p.setOS(b.shown[i])
			b.dlg.Hide()
		}
		b.list.UnselectAll()
	}
	top := container.NewVBox(
		container.NewBorder(nil, nil, widget.NewLabel("Catalogue"), b.load, b.source),
		b.lan,
		container.NewGridWithColumns(2, b.device, b.search),
		b.status)
	content := container.NewBorder(top, nil, nil, nil, b.list)
	b.dlg = dialog.NewCustom("Choose an operating system", "Close", content, p.a.win)
	b.dlg.Resize(fyne.NewSize(720, 520))
	return b
}

func osDetail(o catalog.OS) string {
	s := o.Description
	var parts []string
	if o.ExtractSize > 0 {
		parts = append(parts, units.Decimal(o.ExtractSize))
	}
	if o.ReleaseDate != "" {
		parts = append(parts, "released "+o.ReleaseDate)
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, " · ") + ")"
	}
	return s
}

// reload reads the catalogue in the background.
func (b *catalogueBrowser) reload() {
	src := b.source.Text
	b.status.SetText("Loading " + src + " …")
	b.load.Disable()
	b.p.a.background(func() {
		ctx, cancel := context.WithTimeout(b.p.a.ctx, 2*time.Minute)
		defer cancel()
		c, err := catalog.Load(ctx, src, catalog.Options{})
		onUI(func() { b.loaded(src, c, err) })
	})
}

func (b *catalogueBrowser) loaded(src string, c *catalog.Catalog, err error) {
	b.load.Enable()
	if err != nil {
		b.status.SetText("Cannot read the catalogue: " + err.Error())
		return
	}
	b.p.a.fa.Preferences().SetString("flash.catalogue", src)
	b.cat = c
	opts := []string{anyDevice}
	b.devices = map[string]string{}
	def := anyDevice
	for _, d := range c.Devices {
		label := d.Name
		if d.Description != "" {
			label += " — " + d.Description
		}
		b.devices[label] = d.Name
		opts = append(opts, label)
		if d.Default {
			def = label
		}
	}
	b.device.SetOptions(opts)
	b.device.SetSelected(def)
	b.filter()
}

// filter shows the images for the chosen device that match the search.
func (b *catalogueBrowser) filter() {
	if b.cat == nil {
		return
	}
	b.shown = b.cat.Filter(b.devices[b.device.Selected], b.search.Text)
	b.list.Refresh()
	msg := fmt.Sprintf("%s of %d.", count(len(b.shown), "image"), len(b.cat.OS))
	if n := len(b.cat.Warnings); n > 0 {
		msg += fmt.Sprintf(" %s left out (malformed or unreachable).", count(n, "item"))
	}
	b.status.SetText(msg)
}
