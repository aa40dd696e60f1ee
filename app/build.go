package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/board"
	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/units"
)

// buildScreen edits a recipe and builds it.
type buildScreen struct {
	a       *App
	content fyne.CanvasObject

	recipe   *Recipe
	pwPlain  string // the password typed last, and its hash, so a hash is made once per change
	pwHash   string
	loading  bool // true while the form is filled from a recipe: no validation per field
	problems []FieldError

	pathLabel                     *widget.Label
	name, version, hostname, user *widget.Entry
	password, wifiPSK             *widget.Entry
	sshKeys                       *widget.Entry
	wifiSSID, wifiCountry         *widget.Entry
	timezone, diskSize            *widget.SelectEntry
	board, firmware               *widget.Select
	extras                        []extra // files and overlay folders, as listed
	extraList                     *widget.List
	extraSel                      int
	errs                          map[string]*widget.Label // validation message per form field
	general                       *widget.Label            // problems in fields the form does not show
	pk                            *packagesSection
	svc                           *servicesSection
	pkCard                        *widget.Card
	formScroll                    *container.Scroll

	buildBtn, cancelBtn *widget.Button
	bar                 *widget.ProgressBar
	status              *widget.Label
	cancel              context.CancelFunc

	result                     *BuildResult
	resultBox                  *fyne.Container
	resImage, resSize, resHash *widget.Label
	emptyResult                *widget.Label
	right                      *fyne.Container // the build and result column, re-laid out when a result arrives
}

// extra is one row of the Extra files list: a file placed in the image, or a folder (or tarball)
// merged into its root.
type extra struct {
	file    *RecipeFile
	overlay string
}

// label is the row's text in the list.
func (e extra) label() string {
	if e.file == nil {
		return e.overlay + "  (merged into /)"
	}
	from := e.file.Source
	if from == "" {
		from = "text in the recipe"
	}
	mode := ""
	if e.file.Mode != 0 {
		mode = fmt.Sprintf("  (mode %04o)", e.file.Mode)
	}
	return e.file.Path + " ← " + from + mode
}

// form fields and the recipe fields whose problems they show.
var fieldOf = map[string]string{
	"name": "name", "version": "version",
	"system.hostname": "hostname", "system.timezone": "timezone",
	"board.disk_size": "disk", "board.esp_size": "disk", "board.data_size": "disk", "board.root_size": "disk",
	"board.firmware": "firmware",
	"board.name":     "board", "arch": "board",
	"system.users": "user",
	"system.wifi":  "wifi",
	"system.files": "extras", "system.overlays": "extras",
	"system.packages": "packages", "system.services": "services",
}

// formField maps a recipe problem's field ("system.users[0].ssh_keys[1]") to the form field showing it.
func formField(field string) string {
	if f, ok := fieldOf[field]; ok {
		return f
	}
	switch {
	case strings.Contains(field, ".password_hash"):
		return "password"
	case strings.Contains(field, ".ssh_key"):
		return "ssh"
	case strings.HasPrefix(field, "system.users"):
		return "user"
	case strings.HasPrefix(field, "system.wifi"):
		return "wifi"
	case strings.HasPrefix(field, "system.files"), strings.HasPrefix(field, "system.overlays"):
		return "extras"
	case strings.HasPrefix(field, "system.packages"), strings.HasPrefix(field, "archive"):
		return "packages"
	case strings.HasPrefix(field, "system.services"):
		return "services"
	}
	return ""
}

func newBuildScreen(a *App) *buildScreen {
	s := &buildScreen{a: a, errs: map[string]*widget.Label{}, extraSel: -1}
	s.makeEntries()
	s.makeExtraList()
	s.makeMessages()
	s.pk, s.svc = newPackagesSection(s), newServicesSection(s)
	header := s.header()
	split := container.NewHSplit(s.formColumn(), container.NewVScroll(s.buildColumn()))
	split.SetOffset(0.6)
	s.content = container.NewBorder(header, nil, nil, nil, split)
	return s
}

// makeEntries makes the form's input widgets; each change revalidates the recipe.
func (s *buildScreen) makeEntries() {
	s.name = s.entry("kiln-tiny")
	s.version = s.entry("1.0.0")
	e := newSettingsEntries(s.onChanged, "kiln", "no user account")
	s.hostname, s.user, s.password, s.sshKeys, s.timezone = e.hostname, e.user, e.password, e.sshKeys, e.timezone
	s.wifiSSID, s.wifiPSK, s.wifiCountry = e.wifiSSID, e.wifiPSK, e.wifiCountry
	s.diskSize = widget.NewSelectEntry([]string{"256MiB", "512MiB", "1GiB", "2GiB", "4GiB"})
	s.diskSize.OnChanged = func(string) { s.onChanged() }
	s.firmware = widget.NewSelect([]string{"uefi", "bios", "hybrid"}, func(string) { s.onChanged() })
	s.board = widget.NewSelect(board.Names(), s.onBoard)
}

// makeExtraList makes the list of extra files and overlay folders.
func (s *buildScreen) makeExtraList() {
	s.extraList = widget.NewList(
		func() int { return len(s.extras) },
		func() fyne.CanvasObject {
			return container.NewHBox(widget.NewIcon(theme.FileIcon()), widget.NewLabel("extra"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			row := o.(*fyne.Container)
			icon, label := row.Objects[0].(*widget.Icon), row.Objects[1].(*widget.Label)
			e := s.extras[i]
			if e.file != nil {
				icon.SetResource(theme.FileIcon())
			} else {
				icon.SetResource(theme.FolderIcon())
			}
			label.SetText(e.label())
		})
	s.extraList.OnSelected = func(id widget.ListItemID) { s.extraSel = id }
}

// makeMessages makes the validation message under each form field and the one above the form for
// fields it does not show.
func (s *buildScreen) makeMessages() {
	for _, f := range []string{"name", "version", "board", "hostname", "timezone", "disk", "firmware", "user",
		"password", "ssh", "wifi", "extras", "packages", "services"} {
		l := widget.NewLabel("")
		l.Importance = widget.DangerImportance
		l.Wrapping = fyne.TextWrapWord
		l.Hide()
		s.errs[f] = l
	}
	s.general = widget.NewLabel("")
	s.general.Importance = widget.DangerImportance
	s.general.Wrapping = fyne.TextWrapWord
	s.general.Hide()
}

// header is the screen's title with the recipe's path and the New, Open and Save actions.
func (s *buildScreen) header() fyne.CanvasObject {
	s.pathLabel = widget.NewLabel("New recipe (not saved)")
	s.pathLabel.Truncation = fyne.TextTruncateEllipsis
	toolbar := widget.NewToolbar(
		widget.NewToolbarAction(theme.DocumentCreateIcon(), s.onNew),
		widget.NewToolbarAction(theme.FolderOpenIcon(), s.onOpen),
		widget.NewToolbarAction(theme.DocumentSaveIcon(), s.onSave),
	)
	return container.NewBorder(nil, nil, heading("Build an image"), toolbar, s.pathLabel)
}

// formColumn lays the recipe form out in cards: image, system, Wi-Fi and extra files.
func (s *buildScreen) formColumn() fyne.CanvasObject {
	image := card("Image", "What the image is called and how it boots", widget.NewForm(
		s.item("Name", s.name, "name"),
		s.item("Version", s.version, "version"),
		s.item("Board", s.board, "board"),
		s.item("Firmware", s.firmware, "firmware"),
		s.item("Disk size", s.diskSize, "disk"),
	))
	system := card("System", "Settings applied on first boot", widget.NewForm(
		s.item("Hostname", s.hostname, "hostname"),
		s.item("Time zone", s.timezone, "timezone"),
		s.item("User", s.user, "user"),
		s.item("Password", s.password, "password"),
		s.item("SSH keys", container.NewBorder(nil, nil, nil,
			widget.NewButtonWithIcon("Key file…", theme.FileIcon(), s.onAddKeyFile), s.sshKeys), "ssh"),
	))
	s.pkCard = card("Packages", "Debian packages installed with their dependencies", s.pk.content())
	services := card("Services", "Programs started at boot and restarted when they stop", s.svc.content())
	wifi := card("Wi-Fi", "Optional: join a wireless network at boot", widget.NewForm(
		s.item("Network", s.wifiSSID, "wifi"),
		&widget.FormItem{Text: "Passphrase", Widget: s.wifiPSK},
		&widget.FormItem{Text: "Country", Widget: s.wifiCountry},
	))
	extras := card("Extra files", "Files and folders copied into the image", container.NewBorder(
		nil, container.NewVBox(container.NewHBox(
			widget.NewButtonWithIcon("Add file…", theme.FileIcon(), s.onAddFile),
			widget.NewButtonWithIcon("Add folder…", theme.FolderIcon(), s.onAddFolder),
			widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), s.onRemoveExtra)), s.errs["extras"]),
		nil, nil, minHeight(s.extraList, 96)))
	s.formScroll = container.NewVScroll(container.NewVBox(s.general, image, system, s.pkCard, services, wifi, extras))
	return s.formScroll
}

// buildColumn is the Build card (buttons, progress, status) above the Result card.
func (s *buildScreen) buildColumn() fyne.CanvasObject {
	s.buildBtn = widget.NewButtonWithIcon("Build image", theme.MediaPlayIcon(), s.onBuild)
	s.buildBtn.Importance = widget.HighImportance
	s.cancelBtn = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), s.onCancel)
	s.cancelBtn.Disable()
	s.bar = widget.NewProgressBar()
	s.status = widget.NewLabel("Ready to build.")
	s.status.Wrapping = fyne.TextWrapWord
	buildCard := card("Build", "Makes the disk image, its block map, a manifest and the update bundle",
		container.NewVBox(container.NewGridWithColumns(2, s.buildBtn, s.cancelBtn), s.bar, s.status))
	s.right = container.NewVBox(buildCard, s.resultCard())
	return s.right
}

// resultCard shows the last build: its image, size and checksum, the manifest and where to take it.
func (s *buildScreen) resultCard() fyne.CanvasObject {
	s.resImage, s.resSize, s.resHash = widget.NewLabel(""), widget.NewLabel(""), widget.NewLabel("")
	s.resImage.Wrapping = fyne.TextWrapBreak
	s.resHash.Wrapping = fyne.TextWrapBreak
	s.resHash.TextStyle = fyne.TextStyle{Monospace: true}
	toPreview := widget.NewButtonWithIcon("Preview", theme.ComputerIcon(), s.onPreview)
	toFlash := widget.NewButtonWithIcon("Flash", theme.UploadIcon(), s.onFlash)
	toFlash.Importance = widget.HighImportance
	toPublish := widget.NewButtonWithIcon("Publish", theme.StorageIcon(), s.onPublish)
	s.resultBox = container.NewVBox(
		widget.NewForm(
			&widget.FormItem{Text: "Image", Widget: s.resImage},
			&widget.FormItem{Text: "Size", Widget: s.resSize},
			&widget.FormItem{Text: "SHA-256", Widget: s.resHash},
		),
		widget.NewButtonWithIcon("View manifest", theme.ListIcon(), s.onManifest),
		container.NewGridWithColumns(3, toPreview, toFlash, toPublish),
	)
	s.resultBox.Hide()
	s.emptyResult = widget.NewLabelWithStyle("No image built yet.", fyne.TextAlignCenter, fyne.TextStyle{Italic: true})
	return card("Result", "", container.NewStack(s.emptyResult, s.resultBox))
}

// emptyResult is the placeholder shown until a build finishes.
func (s *buildScreen) setEmptyResult(show bool) {
	if show {
		s.emptyResult.Show()
	} else {
		s.emptyResult.Hide()
	}
}

func (s *buildScreen) entry(placeholder string) *widget.Entry {
	e := widget.NewEntry()
	e.SetPlaceHolder(placeholder)
	e.OnChanged = func(string) { s.onChanged() }
	return e
}

// item makes a form row whose widget has its validation message underneath.
func (s *buildScreen) item(label string, w fyne.CanvasObject, field string) *widget.FormItem {
	return &widget.FormItem{Text: label, Widget: container.NewVBox(w, s.errs[field])}
}

// start loads the last recipe, or the default one.
func (s *buildScreen) start() {
	if p := s.a.pref(prefLastRecipe, ""); p != "" {
		if r, err := s.a.cores.Build.Load(p); err == nil {
			s.setRecipe(r)
			return
		}
	}
	s.onNew()
}

func (s *buildScreen) onNew() {
	r, err := s.a.cores.Build.New()
	if err != nil {
		s.a.showError("Cannot create a recipe", err, "Check that Kiln is installed completely.")
		return
	}
	s.setRecipe(r)
}

func (s *buildScreen) onOpen() {
	s.a.pickFile([]string{".toml"}, s.open)
}

// open loads the recipe at path into the form.
func (s *buildScreen) open(path string) {
	r, err := s.a.cores.Build.Load(path)
	if err != nil {
		s.a.showError("Cannot open the recipe", err, "Fix the lines named above in a text editor, or start a new recipe.")
		return
	}
	s.setRecipe(r)
	s.a.setPref(prefLastRecipe, path)
}

func (s *buildScreen) onSave() {
	if s.recipe == nil || s.recipe.Path == "" {
		s.onSaveAs()
		return
	}
	s.save(s.recipe.Path)
}

func (s *buildScreen) onSaveAs() {
	d := dialog.NewFileSave(func(wc fyne.URIWriteCloser, err error) {
		if err != nil || wc == nil {
			return
		}
		wc.Close()
		s.save(wc.URI().Path())
	}, s.a.win)
	d.SetFileName(s.name.Text + ".toml")
	d.Show()
}

// save writes the form to path.
func (s *buildScreen) save(path string) {
	r := s.collect()
	if err := s.a.cores.Build.Save(r, path); err != nil {
		s.a.showError("Cannot save the recipe", err, "Choose a folder you can write to.")
		return
	}
	r.Path = path
	s.recipe = r
	s.pathLabel.SetText(path)
	s.a.setPref(prefLastRecipe, path)
}

// setRecipe fills the form from r.
func (s *buildScreen) setRecipe(r *Recipe) {
	s.loading = true
	s.recipe = r
	s.pwPlain, s.pwHash = "", r.PasswordHash
	s.name.SetText(r.Name)
	s.version.SetText(r.Version)
	s.hostname.SetText(r.Hostname)
	s.user.SetText(r.User)
	s.password.SetText("")
	if r.PasswordHash != "" {
		s.password.SetPlaceHolder("password set (type to change)")
	} else {
		s.password.SetPlaceHolder("no password login")
	}
	s.sshKeys.SetText(strings.Join(r.SSHKeys, "\n"))
	s.wifiSSID.SetText(r.WifiSSID)
	s.wifiPSK.SetText(r.WifiPSK)
	s.wifiCountry.SetText(r.WifiCountry)
	s.timezone.SetText(r.Timezone)
	s.diskSize.SetText(r.DiskSize)
	s.setBoardOptions(r.Board)
	s.board.SetSelected(r.Board)
	s.firmware.SetSelected(r.Firmware)
	s.extras = s.extras[:0]
	for _, f := range r.Files {
		s.extras = append(s.extras, extra{file: &f})
	}
	for _, o := range r.Overlays {
		s.extras = append(s.extras, extra{overlay: o})
	}
	s.extraList.Refresh()
	s.svc.set(r.Services)
	s.pk.set(r.Packages)
	if r.Path != "" {
		s.pathLabel.SetText(r.Path)
	} else {
		s.pathLabel.SetText("New recipe (not saved)")
	}
	s.loading = false
	s.validate()
}

// collect returns the recipe as the form shows it.
func (s *buildScreen) collect() *Recipe {
	r := &Recipe{}
	if s.recipe != nil {
		*r = *s.recipe
	}
	r.Name = strings.TrimSpace(s.name.Text)
	r.Version = strings.TrimSpace(s.version.Text)
	r.Hostname = strings.TrimSpace(s.hostname.Text)
	r.User = strings.TrimSpace(s.user.Text)
	if p := s.password.Text; p != "" && p != s.pwPlain {
		if h, err := pwhash.Hash(p); err == nil {
			s.pwPlain, s.pwHash = p, h
		}
	}
	r.PasswordHash = s.pwHash
	r.SSHKeys = nil
	for _, l := range strings.Split(s.sshKeys.Text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			r.SSHKeys = append(r.SSHKeys, l)
		}
	}
	r.WifiSSID = strings.TrimSpace(s.wifiSSID.Text)
	r.WifiPSK = s.wifiPSK.Text
	r.WifiCountry = strings.TrimSpace(s.wifiCountry.Text)
	r.Timezone = strings.TrimSpace(s.timezone.Text)
	r.DiskSize = strings.TrimSpace(s.diskSize.Text)
	r.Board = s.board.Selected
	r.Firmware = s.firmware.Selected
	r.Packages = slices.Clone(s.pk.chosen)
	r.Services = slices.Clone(s.svc.services)
	r.Files, r.Overlays = nil, nil
	for _, e := range s.extras {
		if e.file != nil {
			r.Files = append(r.Files, *e.file)
		} else {
			r.Overlays = append(r.Overlays, e.overlay)
		}
	}
	return r
}

// setBoardOptions offers the firmware kinds the board boots with.
func (s *buildScreen) setBoardOptions(name string) {
	b, err := board.Builtin(name)
	switch {
	case err != nil: // a board file: the recipe's own choice
	case b.Arch == board.ArchX86_64:
		s.firmware.Options = []string{"uefi", "bios", "hybrid"}
	default:
		s.firmware.Options = []string{b.Firmware}
	}
	s.firmware.Refresh()
}

// onBoard switches to a board's defaults: firmware and disk size (the recipe's other settings stay).
func (s *buildScreen) onBoard(name string) {
	if s.loading {
		return
	}
	if b, err := board.Builtin(name); err == nil {
		s.loading = true
		s.setBoardOptions(name)
		s.firmware.SetSelected(b.Firmware)
		s.diskSize.SetText(b.Layout.DiskSize.String())
		s.loading = false
	}
	s.onChanged()
	s.pk.reset() // another architecture
}

func (s *buildScreen) onChanged() {
	if !s.loading {
		s.validate()
	}
}

// validate shows the validator's messages beside the fields and enables Build when there are none.
func (s *buildScreen) validate() {
	if s.recipe == nil {
		return
	}
	s.problems = s.a.cores.Build.Validate(s.collect())
	msgs := map[string][]string{}
	var general []string
	for _, p := range s.problems {
		if f := formField(p.Field); f != "" {
			msgs[f] = append(msgs[f], p.Message)
		} else {
			general = append(general, p.Error())
		}
	}
	for f, l := range s.errs {
		if m := msgs[f]; len(m) > 0 {
			l.SetText(strings.Join(m, "\n"))
			l.Show()
		} else {
			l.Hide()
		}
	}
	if len(general) > 0 {
		s.general.SetText(strings.Join(general, "\n"))
		s.general.Show()
	} else {
		s.general.Hide()
	}
	if len(s.problems) > 0 && s.cancel == nil {
		s.buildBtn.Disable()
		s.status.SetText("Fix " + count(len(s.problems), "problem") + " in the recipe to build.")
	} else if s.cancel == nil {
		s.buildBtn.Enable()
		s.status.SetText("Ready to build.")
	}
}

func (s *buildScreen) onAddKeyFile() {
	s.a.pickFile([]string{".pub"}, s.addKeyFile)
}

// addKeyFile appends the public keys in path to the SSH keys field.
func (s *buildScreen) addKeyFile(path string) { addKeyFile(s.a, s.sshKeys, path) }

func (s *buildScreen) onAddFile() {
	dialog.ShowFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			return
		}
		rc.Close()
		src := rc.URI().Path()
		dst := widget.NewEntry()
		dst.SetText("/etc/" + filepath.Base(src))
		dialog.ShowForm("Place the file", "Add", "Cancel",
			[]*widget.FormItem{{Text: "Path in the image", Widget: dst, HintText: "An absolute path, such as /etc/motd"}},
			func(ok bool) {
				if ok {
					s.addExtra(extra{file: &RecipeFile{Path: dst.Text, Source: src}})
				}
			}, s.a.win)
	}, s.a.win)
}

func (s *buildScreen) onAddFolder() {
	dialog.ShowFolderOpen(func(u fyne.ListableURI, err error) {
		if err != nil || u == nil {
			return
		}
		s.addExtra(extra{overlay: u.Path()})
	}, s.a.win)
}

func (s *buildScreen) addExtra(e extra) {
	s.extras = append(s.extras, e)
	s.extraList.Refresh()
	s.onChanged()
}

func (s *buildScreen) onRemoveExtra() {
	if s.extraSel < 0 || s.extraSel >= len(s.extras) {
		return
	}
	s.extras = append(s.extras[:s.extraSel], s.extras[s.extraSel+1:]...)
	s.extraList.UnselectAll()
	s.extraSel = -1
	s.extraList.Refresh()
	s.onChanged()
}

// onBuild starts a build of the form's recipe in the background.
func (s *buildScreen) onBuild() {
	s.validate()
	if len(s.problems) > 0 || s.cancel != nil {
		return
	}
	r := s.collect()
	ctx, cancel := context.WithCancel(s.a.ctx)
	s.cancel = cancel
	s.buildBtn.Disable()
	s.cancelBtn.Enable()
	s.bar.SetValue(0)
	s.status.SetText("Starting the build of " + r.Name + " " + r.Version + "…")
	bridge := NewBridge(s.showProgress)
	s.a.background(func() {
		res, err := s.a.cores.Build.Build(ctx, r, bridge.Func())
		bridge.Close()
		onUI(func() { s.finished(res, err) })
	})
}

func (s *buildScreen) onCancel() {
	if s.cancel != nil {
		s.cancel()
		s.status.SetText("Cancelling…")
		s.cancelBtn.Disable()
	}
}

// showProgress runs on the UI thread (through the bridge).
func (s *buildScreen) showProgress(e progress.Event) {
	if e.Total > 0 {
		s.bar.SetValue(float64(e.Done) / float64(e.Total))
	}
	msg := e.Phase
	if e.Message != "" {
		msg += ": " + e.Message
	}
	s.status.SetText(msg)
}

// finished shows the build's result or error; it runs on the UI thread.
func (s *buildScreen) finished(res *BuildResult, err error) {
	s.cancel = nil
	s.cancelBtn.Disable()
	s.buildBtn.Enable()
	switch {
	case errCancelled(err):
		s.bar.SetValue(0)
		s.status.SetText("Build cancelled. Nothing was kept.")
		return
	case err != nil:
		s.bar.SetValue(0)
		s.status.SetText("Build failed.")
		s.a.showError("The build failed", err, "Fix the recipe or the input named in the message, then build again.")
		return
	}
	s.bar.SetValue(1)
	msg := "Built " + res.Name + " " + res.Version + "."
	for _, w := range res.Warnings {
		msg += "\nWarning: " + w
	}
	s.status.SetText(msg)
	s.showResult(res)
}

func (s *buildScreen) showResult(res *BuildResult) {
	s.result = res
	s.a.setCurrent(res)
	s.resImage.SetText(res.Image)
	s.resSize.SetText(units.Binary(res.Size))
	s.resHash.SetText(res.SHA256)
	s.setEmptyResult(false)
	s.resultBox.Show()
	s.right.Refresh()
}

func (s *buildScreen) onManifest() {
	if s.result == nil {
		return
	}
	text := "This build has no manifest."
	if s.result.Manifest != "" {
		data, err := os.ReadFile(s.result.Manifest)
		if err != nil {
			s.a.showError("Cannot read the manifest", err, "Build the image again.")
			return
		}
		var v any
		if json.Unmarshal(data, &v) == nil {
			if pretty, err := json.MarshalIndent(v, "", "  "); err == nil {
				data = pretty
			}
		}
		text = string(data)
	}
	grid := widget.NewTextGridFromString(text)
	grid.ShowLineNumbers = true
	d := dialog.NewCustom("Manifest — "+s.result.Name+" "+s.result.Version, "Close", container.NewScroll(grid), s.a.win)
	d.Resize(fyne.NewSize(860, 560))
	d.Show()
}

func (s *buildScreen) onPreview() {
	if s.result != nil {
		s.a.carry(s.result, "preview")
	}
}

func (s *buildScreen) onFlash() {
	if s.result != nil {
		s.a.carry(s.result, "flash")
	}
}

func (s *buildScreen) onPublish() {
	if s.result != nil {
		s.a.carry(s.result, "serve")
	}
}
