package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
	"github.com/kilnproject/kiln/assembler/recipe"
)

func matchNames(p *packagesSection) string {
	var s []string
	for _, m := range p.matches {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

// fakeSummary is the summary line a closure of the fake archive must show, added up from the
// archive's table.
func fakeSummary(t *testing.T, closure []string) string {
	t.Helper()
	var dl, inst int64
	for _, name := range closure {
		i := slices.IndexFunc(fakeArchive, func(p struct {
			name, version, fields, desc string
			kib, size                   int64
		}) bool {
			return p.name == name
		})
		if i < 0 {
			t.Fatalf("%s is not in the fake archive", name)
		}
		dl += fakeArchive[i].size
		inst += fakeArchive[i].kib << 10
	}
	return fmt.Sprintf("%d packages resolved · download %.1f MiB · image ≈ %.1f MiB", len(closure), float64(dl)/(1<<20), float64(inst)/(1<<20))
}

// settlePk waits until the package index is loaded and the newest resolve has answered.
func settlePk(t *testing.T, a *App) {
	t.Helper()
	settle(t, a)
	waitFor(t, func() bool { return !a.build.pk.loading && a.build.pk.estCancel == nil })
	settle(t, a)
}

func key(e *packageEntry, k fyne.KeyName) { e.TypedKey(&fyne.KeyEvent{Name: k}) }

// findChip returns the chip of a chosen package.
func findChip(t *testing.T, p *packagesSection, text string) *widget.Button {
	t.Helper()
	for _, o := range p.chips.Objects {
		if b := o.(*widget.Button); b.Text == text {
			return b
		}
	}
	t.Fatalf("no chip %q", text)
	return nil
}

// Typing completes from the archive index (prefix, then substring); Down and Enter, a click or
// a typed constraint add a package; a chip's ✕ removes it; the summary line follows each change
// with the closure's count and sizes; errors show inline.
func TestPackagesSearchAddRemove(t *testing.T) {
	a, fb, _, _, _ := newTestApp(t)
	s, p := a.build, a.build.pk
	settlePk(t, a)
	if fb.indexLoads != 0 || !p.none.Visible() || p.status.Visible() {
		t.Fatalf("a recipe without packages: index loads %d, placeholder shown %v, status %q", fb.indexLoads, p.none.Visible(), p.status.Text)
	}

	test.Type(p.entry, "pyth")
	settlePk(t, a)
	if got := matchNames(p); got != "python3 python3.11 python3-yaml python3-paho-mqtt libpython3-stdlib libpython3.11-stdlib" {
		t.Fatalf("matches for pyth: %q", got)
	}
	if !p.matchBox.Visible() {
		t.Error("the completion list is hidden")
	}
	for range 8 { // Down past the end stays on the last match
		key(p.entry, fyne.KeyDown)
	}
	key(p.entry, fyne.KeyUp)
	key(p.entry, fyne.KeyUp)
	key(p.entry, fyne.KeyReturn)
	if !reflect.DeepEqual(p.chosen, []string{"python3-paho-mqtt"}) || p.entry.Text != "" || p.matchBox.Visible() {
		t.Fatalf("after Down ×8, Up ×2, Enter: chosen %q, entry %q, list shown %v", p.chosen, p.entry.Text, p.matchBox.Visible())
	}

	test.Type(p.entry, "mosquitto (>= 2.0)")
	key(p.entry, fyne.KeyReturn)
	test.Type(p.entry, "dropb")
	if got := matchNames(p); got != "dropbear dropbear-bin" {
		t.Fatalf("matches for dropb: %q", got)
	}
	p.matchList.Select(0)
	test.Type(p.entry, "secure shell")
	if got := matchNames(p); got != "openssh-server" {
		t.Errorf("description search for \"secure shell\": %q", got)
	}
	p.entry.SetText("")
	settlePk(t, a)
	if want := []string{"python3-paho-mqtt", "mosquitto (>= 2.0)", "dropbear"}; !reflect.DeepEqual(p.chosen, want) {
		t.Fatalf("chosen %q, want %q", p.chosen, want)
	}
	base := []string{"base-files", "dash", "libc6"}
	python := []string{"python3-paho-mqtt", "python3", "python3.11", "libpython3.11-stdlib", "libpython3-stdlib", "libssl3"}
	want := fakeSummary(t, slices.Concat(base, python, []string{"mosquitto", "libwrap0", "adduser", "dropbear", "dropbear-bin"}))
	if p.status.Text != want || p.status.Importance == widget.DangerImportance {
		t.Errorf("summary %q, want %q", p.status.Text, want)
	}
	if got := s.collect().Packages; !reflect.DeepEqual(got, p.chosen) {
		t.Errorf("recipe packages %q", got)
	}

	test.Tap(findChip(t, p, "mosquitto (>= 2.0)"))
	settlePk(t, a)
	if want := fakeSummary(t, slices.Concat(base, python, []string{"dropbear", "dropbear-bin"})); p.status.Text != want {
		t.Errorf("after removing mosquitto: %q, want %q", p.status.Text, want)
	}
	// A constraint added for a chosen package replaces its entry.
	test.Type(p.entry, "dropbear (>= 2022)")
	key(p.entry, fyne.KeyReturn)
	if want := []string{"python3-paho-mqtt", "dropbear (>= 2022)"}; !reflect.DeepEqual(p.chosen, want) {
		t.Errorf("chosen %q, want %q", p.chosen, want)
	}

	test.Type(p.entry, "mqtt-bridge")
	key(p.entry, fyne.KeyReturn)
	settlePk(t, a)
	if !strings.Contains(p.status.Text, "mqtt-bridge → libssl3 (>= 3.2)") || !strings.Contains(p.status.Text, "3.0.11-1~deb12u2") ||
		p.status.Importance != widget.DangerImportance {
		t.Errorf("unsatisfiable: %q", p.status.Text)
	}
	test.Tap(findChip(t, p, "mqtt-bridge"))
	test.Type(p.entry, "pyhton3")
	key(p.entry, fyne.KeyReturn)
	settlePk(t, a)
	if !strings.Contains(p.status.Text, `no package "pyhton3"`) || !strings.Contains(p.status.Text, "did you mean python3") {
		t.Errorf("unknown package: %q", p.status.Text)
	}
	test.Tap(findChip(t, p, "pyhton3"))
	test.Tap(findChip(t, p, "python3-paho-mqtt"))
	test.Tap(findChip(t, p, "dropbear (>= 2022)"))
	settlePk(t, a)
	if len(p.chosen) != 0 || !p.none.Visible() || p.status.Visible() {
		t.Errorf("all removed: chosen %q, placeholder %v, status %q", p.chosen, p.none.Visible(), p.status.Text)
	}
	if fb.indexLoads != 1 {
		t.Errorf("the index was loaded %d times", fb.indexLoads)
	}
}

// A resolve started before the last change never overwrites the newer result.
func TestPackagesNewestEstimateWins(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	p := a.build.pk
	slow := &gatedIndex{gate: make(chan struct{})}
	ix, err := fakePackageIndex()
	if err != nil {
		t.Fatal(err)
	}
	slow.PackageIndex = ix
	p.index = slow
	p.choose("mosquitto")
	p.choose("dropbear") // cancels the first resolve, which is still waiting
	close(slow.gate)
	settlePk(t, a)
	if want := fakeSummary(t, []string{"base-files", "dash", "libc6", "mosquitto", "libssl3", "libwrap0", "adduser", "dropbear", "dropbear-bin"}); p.status.Text != want {
		t.Errorf("summary %q", p.status.Text)
	}
	if slow.cancelled == 0 {
		t.Error("the older resolve was not cancelled")
	}
}

type gatedIndex struct {
	PackageIndex
	gate      chan struct{}
	cancelled int
}

func (g *gatedIndex) Estimate(ctx context.Context, pkgs []string) (*PackageEstimate, error) {
	<-g.gate
	if ctx.Err() != nil {
		g.cancelled++
		return nil, ctx.Err()
	}
	return g.PackageIndex.Estimate(ctx, pkgs)
}

func TestPackagesIndexErrorInline(t *testing.T) {
	a, fb, _, _, _ := newTestApp(t)
	fb.PackagesErr = errors.New("no Debian archive configured: this system has no apt sources")
	p := a.build.pk
	p.choose("python3")
	settlePk(t, a)
	if !strings.HasPrefix(p.status.Text, "Cannot load the package index: no Debian archive configured") || p.status.Importance != widget.DangerImportance {
		t.Errorf("status %q", p.status.Text)
	}
}

// The goldens of the Packages card while typing (completion open, chips, summary) and of the
// Services card.
func TestPackagesAndServicesGoldens(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	s := a.build
	s.user.SetText("pi")
	s.pk.loadIndex()
	settlePk(t, a)
	for _, req := range []string{"python3 (>= 3.11)", "mosquitto", "dropbear"} {
		s.pk.choose(req)
	}
	s.svc.set([]RecipeService{
		{Name: "garden", Command: "/usr/bin/python3 /opt/garden.py", User: "pi", Restart: "on-failure", AfterNetwork: true},
		{Name: "logger", Command: "/usr/bin/mosquitto_sub -t garden/#"},
	})
	settlePk(t, a)
	test.Type(s.pk.entry, "wpa")
	settlePk(t, a)
	a.win.Resize(fyne.NewSize(WindowSize.Width, 1400)) // the whole form, unscrolled
	test.AssertRendersToImage(t, "build_packages.png", a.win.Canvas())
	test.AssertRendersToMarkup(t, "build_packages.xml", a.win.Canvas())
}

// Services added, edited and removed in the form are saved as [[system.services]] and read back
// by the recipe package; the editor refuses what the recipe validator refuses.
func TestServicesRoundTrip(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	a.cores.Build = &realBuild{}
	dir := t.TempDir()
	ta := archivetest.New(t, []archivetest.Pkg{archivetest.P("python3", "3.11.2-1", "Installed-Size", "100")}, nil)
	src := fmt.Sprintf(`kiln = 1
name = "garden"
version = "1.0.0"

[system]
hostname = "garden"
packages = ["python3"]

[[system.services]]
name = "sensors"
command = "/usr/local/bin/run"

[[system.users]]
name = "pi"

[archive]
mirrors = [%q]
suites = ["stable"]
keyring = %q
`, ta.URL, ta.Keyring)
	orig := filepath.Join(dir, "garden.toml")
	if err := os.WriteFile(orig, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_CACHE", filepath.Join(dir, "cache"))
	s := a.build
	s.open(orig)
	settlePk(t, a)
	if len(s.problems) != 0 {
		t.Fatalf("problems: %v", s.problems)
	}
	if got := s.pk.status.Text; got != "1 package resolved · download 0.0 MiB · image ≈ 0.1 MiB" {
		t.Errorf("summary from the test archive: %q", got)
	}

	// The recipe validator's message for a broken request shows in the Packages card.
	s.pk.choose("python3 (>=")
	settlePk(t, a)
	if l := s.errs["packages"]; !l.Visible() || !strings.Contains(l.Text, "write a package name with an optional version") {
		t.Errorf("validation message under Packages: %q (shown %v)", l.Text, l.Visible())
	}
	s.pk.choose("python3")
	settlePk(t, a)
	if l := s.errs["packages"]; l.Visible() || !strings.HasPrefix(s.pk.status.Text, "1 package resolved") {
		t.Errorf("after fixing it: message %q, summary %q", l.Text, s.pk.status.Text)
	}

	s.svc.list.Select(0)
	s.svc.edit(s.svc.sel)
	e := s.svc.editor
	if e == nil || e.name.Text != "sensors" || e.restart.Selected != "always" {
		t.Fatalf("editor for service 0: %+v", e)
	}
	e.command.SetText("/usr/local/bin/run --fast")
	e.restart.SetSelected("on-failure")
	e.after.SetChecked(true)
	test.Tap(findButton(t, a, "Save"))

	s.svc.edit(-1)
	e = s.svc.editor
	for _, c := range []struct{ name, command, user, field, msg string }{
		{"Bad Name", "/bin/true", "", "name", `bad service name "Bad Name"`},
		{"sensors", "/bin/true", "", "name", `service "sensors" is defined twice`},
		{"logger", "", "", "command", "no command given"},
		{"logger", "/bin/true", "nobody", "user", `user "nobody" is not defined`},
	} {
		e.name.SetText(c.name)
		e.command.SetText(c.command)
		e.userSel.SetText(c.user)
		var err error
		switch c.field {
		case "name":
			err = e.name.Validate()
		case "command":
			err = e.command.Validate()
		case "user":
			err = e.userSel.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: validation %v", c, err)
		}
		if !findButton(t, a, "Save").Disabled() {
			t.Errorf("%+v: Save enabled", c)
		}
		if c.msg == "no command given" {
			s.pathLabel.SetText("garden.toml") // not the temporary directory's name
			test.AssertRendersToImage(t, "build_service_invalid.png", a.win.Canvas())
		}
	}
	e.name.SetText("logger")
	e.command.SetText("/usr/bin/mosquitto_sub -t garden/#")
	e.userSel.SetText("pi")
	if findButton(t, a, "Save").Disabled() {
		t.Fatalf("Save disabled for a valid service: %v %v %v", e.name.Validate(), e.command.Validate(), e.userSel.Validate())
	}
	test.Tap(findButton(t, a, "Save"))

	s.svc.edit(-1)
	s.svc.editor.name.SetText("scratch")
	s.svc.editor.command.SetText("/bin/sleep 1")
	test.Tap(findButton(t, a, "Save"))
	s.svc.list.Select(2)
	test.Tap(findButton(t, a, "Remove"))

	saved := filepath.Join(dir, "saved.toml")
	s.save(saved)
	got, err := recipe.Load(saved)
	if err != nil {
		t.Fatalf("saved recipe does not load: %v", err)
	}
	want := []recipe.Service{
		{Name: "sensors", Command: "/usr/local/bin/run --fast", Restart: "on-failure", AfterNetwork: true},
		{Name: "logger", Command: "/usr/bin/mosquitto_sub -t garden/#", User: "pi", Restart: "always"},
	}
	if !reflect.DeepEqual(got.System.Services, want) {
		t.Errorf("saved services\n%+v\nwant\n%+v", got.System.Services, want)
	}
	if !reflect.DeepEqual(got.System.Packages, []string{"python3"}) {
		t.Errorf("saved packages %q", got.System.Packages)
	}
	data, _ := os.ReadFile(saved)
	if !strings.Contains(string(data), "[[system.services]]") {
		t.Errorf("no [[system.services]] table in\n%s", data)
	}
}
