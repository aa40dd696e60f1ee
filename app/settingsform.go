package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/progress"
)

// timezones and keyboards are the choices offered; any other value can be typed.
var (
	timezones = []string{"UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York",
		"America/Chicago", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney"}
	keyboards = []string{"us", "gb", "de", "fr", "es", "it", "se", "no", "dk", "fi", "nl", "ch", "jp"}
)

// formatChoices are the init formats the form offers, by label.
var formatChoices = []struct{ label, format string }{
	{"Look at the image", customise.FormatAuto},
	{"cloud-init (Ubuntu and others)", customise.FormatCloudInit},
	{"cloud-init (Raspberry Pi OS)", customise.FormatCloudInitRPi},
	{"firstrun.sh (Raspberry Pi OS before Trixie)", customise.FormatSystemd},
}

// settingsEntries are the inputs of the first-boot settings a recipe's [system] holds, shared by the
// Build screen's recipe form and the Flash screen's settings form.
type settingsEntries struct {
	hostname, user, wifiSSID, wifiCountry *widget.Entry
	password, wifiPSK                     *widget.Entry
	sshKeys                               *widget.Entry
	timezone                              *widget.SelectEntry
}

// newSettingsEntries makes the inputs; each change calls onChanged. The hostname and user
// placeholders say what an empty field means where they are used.
func newSettingsEntries(onChanged func(), hostname, user string) settingsEntries {
	changed := func(string) { onChanged() }
	entry := func(placeholder string) *widget.Entry {
		e := widget.NewEntry()
		e.SetPlaceHolder(placeholder)
		e.OnChanged = changed
		return e
	}
	password := func(placeholder string) *widget.Entry {
		e := widget.NewPasswordEntry()
		e.SetPlaceHolder(placeholder)
		e.OnChanged = changed
		return e
	}
	e := settingsEntries{hostname: entry(hostname), user: entry(user), password: password("no password login"),
		wifiSSID: entry("network name (none: wired only)"), wifiPSK: password("passphrase"), wifiCountry: entry("GB")}
	e.sshKeys = widget.NewMultiLineEntry()
	e.sshKeys.SetPlaceHolder("ssh-ed25519 AAAA… one key per line")
	e.sshKeys.SetMinRowsVisible(2)
	e.sshKeys.Wrapping = fyne.TextWrapOff
	e.sshKeys.OnChanged = changed
	e.timezone = widget.NewSelectEntry(timezones)
	e.timezone.OnChanged = changed
	return e
}

// settingsForm edits first-boot settings — hostname, user, password, SSH keys, Wi-Fi, timezone,
// keyboard, an own user-data file — the settings a recipe's [system] holds, for third-party images.
type settingsForm struct {
	a       *App
	content fyne.CanvasObject

	settingsEntries
	keyboard      *widget.SelectEntry
	wifiHidden    *widget.Check
	format        *widget.Select
	userData      string
	userDataLabel *widget.Label
	problems      *widget.Label // what is wrong; placed by the caller, in view
	onValid       func(ok bool)

	pwPlain, pwHash string // the password typed last and its hash, made once per change
	ready           bool   // every widget exists: validation may run
}

func newSettingsForm(a *App) *settingsForm {
	f := &settingsForm{a: a}
	f.settingsEntries = newSettingsEntries(f.validate, "keep the image's", "keep the image's default user")
	f.timezone.SetPlaceHolder("keep the image's")
	f.wifiHidden = widget.NewCheck("Hidden network", func(bool) { f.validate() })
	f.keyboard = widget.NewSelectEntry(keyboards)
	f.keyboard.SetPlaceHolder("keep the image's")
	f.keyboard.OnChanged = func(string) { f.validate() }
	var labels []string
	for _, c := range formatChoices {
		labels = append(labels, c.label)
	}
	f.format = widget.NewSelect(labels, func(string) { f.validate() })
	f.format.SetSelectedIndex(0)
	f.userDataLabel = widget.NewLabel("none")
	f.userDataLabel.Wrapping = fyne.TextWrapBreak
	f.problems = widget.NewLabel("")
	f.problems.Importance = widget.DangerImportance
	f.problems.Wrapping = fyne.TextWrapWord
	f.problems.Hide()

	keyFile := widget.NewButtonWithIcon("Key file…", theme.FileIcon(), func() { f.a.pickFile([]string{".pub"}, f.addKeyFile) })
	userData := container.NewBorder(nil, nil, nil, container.NewHBox(
		widget.NewButtonWithIcon("Choose…", theme.FileIcon(), func() { f.a.pickFile(nil, f.setUserData) }),
		widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { f.setUserData("") })), f.userDataLabel)
	f.content = container.NewVBox(
		widget.NewForm(
			widget.NewFormItem("Hostname", f.hostname),
			widget.NewFormItem("User", f.user),
			widget.NewFormItem("Password", f.password),
			widget.NewFormItem("SSH keys", container.NewBorder(nil, nil, nil, keyFile, f.sshKeys)),
			widget.NewFormItem("Wi-Fi network", f.wifiSSID),
			widget.NewFormItem("Passphrase", f.wifiPSK),
			widget.NewFormItem("Country", container.NewBorder(nil, nil, nil, f.wifiHidden, f.wifiCountry)),
			widget.NewFormItem("Time zone", f.timezone),
			widget.NewFormItem("Keyboard", f.keyboard),
			widget.NewFormItem("Own user-data", userData),
			widget.NewFormItem("Image format", f.format),
		),
	)
	f.ready = true
	return f
}

// set fills the form from s.
func (f *settingsForm) set(s customise.Settings) {
	f.hostname.SetText(s.Hostname)
	f.timezone.SetText(s.Timezone)
	f.keyboard.SetText(s.Keyboard)
	f.user.SetText("")
	f.pwPlain, f.pwHash = "", ""
	f.password.SetText("")
	f.sshKeys.SetText("")
	if len(s.Users) > 0 {
		u := s.Users[0]
		f.user.SetText(u.Name)
		f.pwHash = u.PasswordHash
		f.sshKeys.SetText(strings.Join(u.SSHKeys, "\n"))
	}
	if f.pwHash != "" {
		f.password.SetPlaceHolder("password set (type to change)")
	} else {
		f.password.SetPlaceHolder("no password login")
	}
	f.wifiSSID.SetText("")
	f.wifiPSK.SetText("")
	f.wifiCountry.SetText("")
	if w := s.WiFi; w != nil {
		f.wifiSSID.SetText(w.SSID)
		f.wifiPSK.SetText(w.PSK)
		f.wifiCountry.SetText(w.Country)
	}
	f.wifiHidden.SetChecked(s.WiFiHidden)
	for i, c := range formatChoices {
		if c.format == s.Format {
			f.format.SetSelectedIndex(i)
		}
	}
	f.setUserDataText(s.UserData)
	f.validate()
}

// setRecipe fills the form with a recipe's first-boot settings: the same settings, for another image.
func (f *settingsForm) setRecipe(r *Recipe) {
	s := customise.Settings{Hostname: r.Hostname, Timezone: r.Timezone}
	if r.User != "" {
		s.Users = []recipe.User{{Name: r.User, PasswordHash: r.PasswordHash, SSHKeys: r.SSHKeys}}
	}
	if r.WifiSSID != "" {
		s.WiFi = &recipe.WiFi{SSID: r.WifiSSID, PSK: r.WifiPSK, Country: r.WifiCountry}
	}
	f.set(s)
}

// settings returns the settings as the form shows them.
func (f *settingsForm) settings() customise.Settings {
	s := customise.Settings{
		Hostname:   strings.TrimSpace(f.hostname.Text),
		Timezone:   strings.TrimSpace(f.timezone.Text),
		Keyboard:   strings.TrimSpace(f.keyboard.Text),
		WiFiHidden: f.wifiHidden.Checked,
		Format:     formatChoices[max(0, f.format.SelectedIndex())].format,
	}
	if p := f.password.Text; p != "" && p != f.pwPlain {
		if h, err := pwhash.Hash(p); err == nil {
			f.pwPlain, f.pwHash = p, h
		}
	}
	var keys []string
	for _, l := range strings.Split(f.sshKeys.Text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keys = append(keys, l)
		}
	}
	if name := strings.TrimSpace(f.user.Text); name != "" {
		s.Users = []recipe.User{{Name: name, PasswordHash: f.pwHash, SSHKeys: keys}}
	}
	if ssid := strings.TrimSpace(f.wifiSSID.Text); ssid != "" {
		s.WiFi = &recipe.WiFi{SSID: ssid, PSK: f.wifiPSK.Text, Country: strings.ToUpper(strings.TrimSpace(f.wifiCountry.Text))}
	}
	if f.userData != "" {
		s.UserData = []byte(f.userData)
	}
	return s
}

// check returns what is wrong with the settings, or nil.
func (f *settingsForm) check() error {
	s := f.settings()
	var errs []error
	if len(s.Users) == 0 && (strings.TrimSpace(f.sshKeys.Text) != "" || f.password.Text != "") {
		errs = append(errs, errors.New("give the user name the password and keys are for"))
	}
	if s.WiFi == nil && (f.wifiPSK.Text != "" || strings.TrimSpace(f.wifiCountry.Text) != "") {
		errs = append(errs, errors.New("give the Wi-Fi network's name"))
	}
	if !s.Empty() {
		errs = append(errs, s.Check())
	}
	return errors.Join(errs...)
}

func (f *settingsForm) validate() {
	if !f.ready {
		return
	}
	err := f.check()
	if err != nil {
		f.problems.SetText(strings.ReplaceAll(err.Error(), "system.", ""))
		f.problems.Show()
	} else {
		f.problems.Hide()
	}
	if f.onValid != nil {
		f.onValid(err == nil)
	}
}

// addKeyFile appends the public keys of a .pub or authorized_keys file.
func (f *settingsForm) addKeyFile(path string) { addKeyFile(f.a, f.sshKeys, path) }

// addKeyFile appends the public keys of a .pub or authorized_keys file to an SSH keys field.
func addKeyFile(a *App, field *widget.Entry, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		a.showError("Cannot read the key file", err, "Pick a public key file such as ~/.ssh/id_ed25519.pub.")
		return
	}
	keys, err := recipe.ParseAuthorizedKeys(b)
	if err != nil {
		a.showError("Not a public key", fmt.Errorf("%s: %w", filepath.Base(path), err), "Pick the .pub file, never the private key.")
		return
	}
	cur := strings.TrimSpace(field.Text)
	if cur != "" {
		cur += "\n"
	}
	field.SetText(cur + strings.Join(keys, "\n"))
}

// setUserData reads the user's own user-data file ("" removes it).
func (f *settingsForm) setUserData(path string) {
	if path == "" {
		f.setUserDataText(nil)
		f.validate()
		return
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Size() > customise.MaxUserData {
		err = fmt.Errorf("%s is larger than %d KiB", filepath.Base(path), customise.MaxUserData>>10)
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		f.a.showError("Cannot use the user-data file", err, "Pick a cloud-init user-data file (#cloud-config) of at most 1 MiB.")
		return
	}
	f.setUserDataText(b)
	f.userDataLabel.SetText(filepath.Base(path) + " — " + f.userDataLabel.Text)
	f.validate()
}

func (f *settingsForm) setUserDataText(b []byte) {
	f.userData = string(b)
	switch {
	case len(b) == 0:
		f.userDataLabel.SetText("none")
	case f.hasOtherSettings():
		f.userDataLabel.SetText(fmt.Sprintf("%d bytes, merged with the settings above", len(b)))
	default:
		f.userDataLabel.SetText(fmt.Sprintf("%d bytes, written as it is", len(b)))
	}
}

func (f *settingsForm) hasOtherSettings() bool {
	s := f.settings()
	s.UserData = nil
	return !s.Empty()
}

// summary describes settings in one line.
func settingsSummary(s *customise.Settings) string {
	if s == nil || s.Empty() {
		return "No first-boot settings: the image is written as it is."
	}
	var parts []string
	if s.Hostname != "" {
		parts = append(parts, "hostname "+s.Hostname)
	}
	for _, u := range s.Users {
		what := "user " + u.Name
		if n := len(u.SSHKeys); n > 0 {
			what += " with " + count(n, "SSH key")
		}
		parts = append(parts, what)
	}
	if s.WiFi != nil {
		parts = append(parts, "Wi-Fi "+s.WiFi.SSID)
	}
	if s.Timezone != "" {
		parts = append(parts, s.Timezone)
	}
	if s.Keyboard != "" {
		parts = append(parts, "keyboard "+s.Keyboard)
	}
	if len(s.UserData) > 0 {
		parts = append(parts, "own user-data")
	}
	return "First-boot settings (cloud-init images): " + strings.Join(parts, ", ") + "."
}

// customiseRow is the Flash screen's "Customise…" button and the summary of the settings chosen.
type customiseRow struct {
	a        *App
	row      fyne.CanvasObject
	label    *widget.Label
	settings *customise.Settings
	form     *settingsForm // the form last opened
}

func newCustomiseRow(a *App) *customiseRow {
	c := &customiseRow{a: a, label: widget.NewLabel(settingsSummary(nil))}
	c.label.Wrapping = fyne.TextWrapWord
	btn := widget.NewButtonWithIcon("Customise…", theme.SettingsIcon(), c.open)
	c.row = container.NewBorder(nil, nil, btn, nil, c.label)
	return c
}

// open shows the settings form in a dialog; Save keeps valid settings, Clear drops them.
func (c *customiseRow) open() {
	f := newSettingsForm(c.a)
	c.form = f
	if c.settings != nil {
		f.set(*c.settings)
	}
	var d *dialog.CustomDialog
	save := widget.NewButtonWithIcon("Use these settings", theme.ConfirmIcon(), func() {
		if s := f.settings(); f.check() == nil {
			c.set(&s)
			d.Hide()
		}
	})
	save.Importance = widget.HighImportance
	f.onValid = func(ok bool) {
		if ok {
			save.Enable()
		} else {
			save.Disable()
		}
	}
	f.validate()
	buttons := []fyne.CanvasObject{
		widget.NewButton("Cancel", func() { d.Hide() }),
		widget.NewButtonWithIcon("Clear", theme.DeleteIcon(), func() { c.set(nil); d.Hide() }),
	}
	if r := c.a.recipe(); r != nil {
		buttons = append(buttons, widget.NewButtonWithIcon("From the recipe", theme.DocumentIcon(), func() { f.setRecipe(r) }))
	}
	intro := widget.NewLabel("Written into the image's boot partition as cloud-init user-data, network-config and meta-data while flashing. Images without cloud-init are written unchanged.")
	intro.Wrapping = fyne.TextWrapWord
	// The problems stay in view below the scrolling form, above the buttons they disable.
	d = dialog.NewCustomWithoutButtons("First-boot settings",
		container.NewBorder(nil, f.problems, nil, nil, container.NewVScroll(container.NewVBox(intro, f.content))), c.a.win)
	d.SetButtons(append(buttons, save))
	d.Resize(fyne.NewSize(620, 640))
	d.Show()
}

func (c *customiseRow) set(s *customise.Settings) {
	if s != nil && s.Empty() {
		s = nil
	}
	c.settings = s
	c.label.SetText(settingsSummary(s))
}

// recipe returns the Build screen's recipe as its form shows it, or nil.
func (a *App) recipe() *Recipe {
	if a.build == nil || a.build.recipe == nil {
		return nil
	}
	return a.build.collect()
}

// settingsFlasher is a FlashCore that writes first-boot settings into the image while flashing.
type settingsFlasher interface {
	FlashWithSettings(ctx context.Context, image string, devices []string, s *customise.Settings, p progress.Func) ([]FlashResult, error)
}

// flashWith flashes with the settings when there are any.
func flashWith(core FlashCore, ctx context.Context, image string, devices []string, s *customise.Settings, p progress.Func) ([]FlashResult, error) {
	if sf, ok := core.(settingsFlasher); ok && s != nil {
		return sf.FlashWithSettings(ctx, image, devices, s, p)
	}
	if s != nil {
		return nil, errors.New("flash: this build of Kiln cannot write first-boot settings")
	}
	return core.Flash(ctx, image, devices, p)
}

// FlashWithSettings flashes as Flash does and records the settings, for the tests.
func (f *FakeFlash) FlashWithSettings(ctx context.Context, img string, devs []string, s *customise.Settings, p progress.Func) ([]FlashResult, error) {
	f.mu.Lock()
	f.settings = s
	f.mu.Unlock()
	res, err := f.Flash(ctx, img, devs, p)
	for i := range res {
		if res[i].Err == nil {
			res[i].Note = "first-boot settings written for cloudinit (cloud-init files on its boot partition): user-data, meta-data"
		}
	}
	return res, err
}
