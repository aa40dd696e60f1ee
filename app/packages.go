package app

import (
	"context"
	"fmt"
	"image/color"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/units"
)

// archiveIndex adapts archive.Index. The estimate resolves as a build does: with the Essential
// and required base that package images carry.
type archiveIndex struct{ ix *archive.Index }

func (x archiveIndex) Search(q string, n int) []PackageInfo {
	var out []PackageInfo
	for _, e := range x.ix.Search(q, n) {
		out = append(out, PackageInfo{Name: e.Name, Version: e.Version, Description: e.Description,
			Size: e.Size, InstalledSize: e.InstalledSize})
	}
	return out
}

func (x archiveIndex) Estimate(ctx context.Context, pkgs []string) (*PackageEstimate, error) {
	e, err := x.ix.Estimate(ctx, pkgs, archive.Options{Base: true})
	if err != nil {
		return nil, err
	}
	return &PackageEstimate{Count: len(e.Packages), Download: e.Download, Installed: e.InstalledSize}, nil
}

// maxMatches is how many packages the completion list offers; matchRows how many it shows at once.
const (
	maxMatches = 20
	matchRows  = 5
)

// packageEntry is the package name entry: Up and Down move through the completion list, Escape
// closes it.
type packageEntry struct {
	widget.Entry
	onKey func(fyne.KeyName) bool // true when handled
}

func newPackageEntry() *packageEntry {
	e := &packageEntry{}
	e.ExtendBaseWidget(e)
	return e
}

func (e *packageEntry) TypedKey(k *fyne.KeyEvent) {
	if e.onKey != nil && e.onKey(k.Name) {
		return
	}
	e.Entry.TypedKey(k)
}

// packagesSection is the Build screen's Packages card: an entry completing from the archive's
// index, the chosen packages as removable chips and what they resolve to.
type packagesSection struct {
	s      *buildScreen
	entry  *packageEntry
	add    *widget.Button
	chips  *fyne.Container
	none   *widget.Label
	status *widget.Label // "N packages resolved · download … · image ≈ …", or what went wrong

	matches   []PackageInfo
	hl        int // highlighted match, for Enter
	matchList *widget.List
	matchSize *canvas.Rectangle
	matchBox  *fyne.Container

	chosen     []string
	index      PackageIndex
	loading    bool
	loadCancel context.CancelFunc
	estCancel  context.CancelFunc
	gen        int // the newest estimate; older results are dropped
}

func newPackagesSection(s *buildScreen) *packagesSection {
	p := &packagesSection{s: s}
	p.entry = newPackageEntry()
	p.entry.SetPlaceHolder("Type a package name, e.g. python3 or \"python3 (>= 3.11)\"")
	p.entry.OnChanged = p.search
	p.entry.OnSubmitted = func(string) { p.submit() }
	p.entry.onKey = p.key
	p.add = widget.NewButtonWithIcon("Add", theme.ContentAddIcon(), p.submit)
	p.matchList = widget.NewList(
		func() int { return len(p.matches) },
		func() fyne.CanvasObject {
			name := widget.NewLabel("package")
			desc := widget.NewLabel("description")
			desc.Truncation = fyne.TextTruncateEllipsis
			return container.NewBorder(nil, nil, name, widget.NewLabel("0 MiB"), desc)
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			row := o.(*fyne.Container)
			desc, name, size := row.Objects[0].(*widget.Label), row.Objects[1].(*widget.Label), row.Objects[2].(*widget.Label)
			m := p.matches[i]
			name.SetText(m.Name + "  " + m.Version)
			name.TextStyle = fyne.TextStyle{Bold: i == p.hl}
			name.Refresh()
			desc.SetText(m.Description)
			size.SetText(units.Binary(m.InstalledSize))
			row.Refresh() // lay the name's new width out
		})
	p.matchList.OnSelected = func(id widget.ListItemID) {
		p.matchList.UnselectAll()
		if id >= 0 && id < len(p.matches) {
			p.choose(p.matches[id].Name)
		}
	}
	p.matchSize = canvas.NewRectangle(color.Transparent)
	p.matchBox = container.NewStack(p.matchSize, p.matchList)
	p.matchBox.Hide()
	p.chips = container.New(layout.NewRowWrapLayout())
	p.none = widget.NewLabelWithStyle("No packages: the image is Kiln Tiny (busybox and the Kiln agent).", fyne.TextAlignLeading, fyne.TextStyle{Italic: true})
	p.status = widget.NewLabel("")
	p.status.Wrapping = fyne.TextWrapWord
	return p
}

// content is the card's body.
func (p *packagesSection) content() fyne.CanvasObject {
	return container.NewVBox(
		container.NewBorder(nil, nil, nil, p.add, p.entry),
		p.matchBox,
		p.none, p.chips,
		p.s.errs["packages"],
		p.status,
	)
}

// set shows a recipe's packages and resolves them against its archive.
func (p *packagesSection) set(pkgs []string) {
	p.chosen = slices.Clone(pkgs)
	p.entry.SetText("")
	p.refreshChips()
	p.reset() // the recipe may name another archive
}

// reset drops the index (another board or archive) and loads it again when needed.
func (p *packagesSection) reset() {
	if p.loadCancel != nil {
		p.loadCancel()
		p.loadCancel = nil
	}
	p.index, p.loading = nil, false
	p.estimate()
}

func (p *packagesSection) refreshChips() {
	chips := make([]fyne.CanvasObject, 0, len(p.chosen))
	for i, req := range p.chosen {
		b := widget.NewButtonWithIcon(req, theme.CancelIcon(), func() { p.remove(i) })
		b.IconPlacement = widget.ButtonIconTrailingText
		chips = append(chips, b)
	}
	p.chips.Objects = chips
	p.chips.Refresh()
	if len(p.chosen) == 0 {
		p.none.Show()
		p.chips.Hide()
	} else {
		p.none.Hide()
		p.chips.Show()
	}
}

// loadIndex fetches the package index in the background, then searches and estimates again.
func (p *packagesSection) loadIndex() {
	if p.index != nil || p.loading || p.s.recipe == nil {
		return
	}
	p.loading = true
	ctx, cancel := context.WithCancel(p.s.a.ctx)
	p.loadCancel = cancel
	p.setStatus("Loading the package index…", widget.MediumImportance)
	bridge := NewBridge(func(e progress.Event) {
		if p.loading && e.Done > 0 {
			p.setStatus("Loading the package index: "+units.Binary(e.Done)+"…", widget.MediumImportance)
		}
	})
	r := p.s.collect()
	reqs := slices.Clone(p.chosen)
	p.s.a.background(func() {
		ix, err := p.s.a.cores.Build.Packages(ctx, r, bridge.Func())
		bridge.Close()
		// Resolve the list as it was in the same goroutine: the result line comes with the index.
		var est *PackageEstimate
		var estErr error
		if err == nil && len(reqs) > 0 {
			est, estErr = ix.Estimate(ctx, reqs)
		}
		onUI(func() {
			if ctx.Err() != nil || p.loadCancel == nil {
				return // reset or closed meanwhile
			}
			p.loading, p.loadCancel = false, nil
			cancel()
			if err != nil {
				p.setStatus("Cannot load the package index: "+err.Error(), widget.DangerImportance)
				return
			}
			p.index = ix
			p.search(p.entry.Text)
			if slices.Equal(reqs, p.chosen) && p.estCancel == nil {
				p.gen++
				p.showEstimate(est, estErr)
			} else {
				p.estimate()
			}
		})
	})
}

// search fills the completion list with the packages matching text.
func (p *packagesSection) search(text string) {
	p.matches, p.hl = nil, 0
	if strings.TrimSpace(text) != "" {
		if p.index == nil {
			p.loadIndex()
		} else {
			for _, m := range p.index.Search(text, maxMatches) {
				if !slices.Contains(p.chosenNames(), m.Name) {
					p.matches = append(p.matches, m)
				}
			}
		}
	}
	p.showMatches()
}

func (p *packagesSection) showMatches() {
	if len(p.matches) == 0 {
		p.matchBox.Hide()
	} else {
		rows := min(len(p.matches), matchRows)
		p.matchSize.SetMinSize(fyne.NewSize(0, float32(rows)*(p.matchList.CreateItem().MinSize().Height+theme.Padding())))
		p.matchList.Refresh()
		p.matchList.ScrollToTop()
		p.matchBox.Show()
	}
	p.matchBox.Refresh()
}

// key moves the highlight through the completion list.
func (p *packagesSection) key(k fyne.KeyName) bool {
	switch {
	case len(p.matches) == 0:
		return false
	case k == fyne.KeyDown:
		p.hl = min(p.hl+1, len(p.matches)-1)
	case k == fyne.KeyUp:
		p.hl = max(p.hl-1, 0)
	case k == fyne.KeyEscape:
		p.matches = nil
		p.showMatches()
		return true
	default:
		return false
	}
	p.matchList.Refresh()
	p.matchList.ScrollTo(p.hl)
	return true
}

// submit adds what Enter or Add chose: the entry's text as typed when it carries a version
// constraint or alternatives, else the highlighted match, else the text.
func (p *packagesSection) submit() {
	text := strings.TrimSpace(p.entry.Text)
	switch {
	case text == "":
		return
	case strings.ContainsAny(text, "(|") || len(p.matches) == 0:
		p.choose(text)
	default:
		p.choose(p.matches[p.hl].Name)
	}
}

// choose adds a package request; one for the same package replaces it (a version constraint
// added later).
func (p *packagesSection) choose(req string) {
	req = strings.TrimSpace(req)
	if req == "" {
		return
	}
	name := requestName(req)
	if i := slices.Index(p.chosenNames(), name); i >= 0 && !strings.Contains(req, "|") {
		p.chosen[i] = req
	} else {
		p.chosen = append(p.chosen, req)
	}
	p.entry.SetText("")
	p.matches = nil
	p.showMatches()
	p.changed()
}

func (p *packagesSection) remove(i int) {
	if i < 0 || i >= len(p.chosen) {
		return
	}
	p.chosen = slices.Delete(p.chosen, i, i+1)
	p.changed()
}

func (p *packagesSection) changed() {
	p.refreshChips()
	p.s.onChanged()
	p.estimate()
}

// requestName is the package a request names: "python3" of "python3 (>= 3.11)".
func requestName(req string) string {
	if i := strings.IndexAny(req, " (:|"); i >= 0 {
		return req[:i]
	}
	return req
}

func (p *packagesSection) chosenNames() []string {
	out := make([]string, len(p.chosen))
	for i, c := range p.chosen {
		out[i] = requestName(c)
	}
	return out
}

// estimate resolves the chosen packages in the background, cancelling the previous resolve, and
// shows the result line.
func (p *packagesSection) estimate() {
	if p.estCancel != nil {
		p.estCancel()
		p.estCancel = nil
	}
	p.gen++
	if len(p.chosen) == 0 {
		p.setStatus("", widget.MediumImportance)
		return
	}
	if p.index == nil {
		p.loadIndex()
		return
	}
	gen, reqs, ix := p.gen, slices.Clone(p.chosen), p.index
	ctx, cancel := context.WithCancel(p.s.a.ctx)
	p.estCancel = cancel
	p.setStatus("Resolving "+count(len(reqs), "package")+"…", widget.MediumImportance)
	p.s.a.background(func() {
		est, err := ix.Estimate(ctx, reqs)
		onUI(func() {
			cancel()
			if gen != p.gen {
				return
			}
			p.estCancel = nil
			p.showEstimate(est, err)
		})
	})
}

func (p *packagesSection) showEstimate(est *PackageEstimate, err error) {
	switch {
	case len(p.chosen) == 0:
		p.setStatus("", widget.MediumImportance)
	case err != nil:
		p.setStatus("Cannot install these packages: "+err.Error(), widget.DangerImportance)
	default:
		p.setStatus(summaryLine(est), widget.MediumImportance)
	}
}

// summaryLine is the result line of an estimate.
func summaryLine(e *PackageEstimate) string {
	return fmt.Sprintf("%s resolved · download %s · image ≈ %s", count(e.Count, "package"), mib(e.Download), mib(e.Installed))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (p *packagesSection) setStatus(text string, imp widget.Importance) {
	p.status.Importance = imp
	p.status.SetText(text)
	if text == "" {
		p.status.Hide()
	} else {
		p.status.Show()
	}
}
