// Package app is Kiln's desktop GUI (Fyne): Build, Flash, Preview and Serve screens over the core
// packages. Each screen is a struct in its own file with named handlers; the screens reach the core
// packages only through the interfaces in cores.go, and progress reaches the widgets through a
// Bridge that throttles updates to the UI thread. Long work runs in goroutines that can be cancelled.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assets"
)

// AppID is the application identifier (FyneApp.toml, the .desktop file, preferences).
const AppID = "org.kilnproject.kiln"

// Preference keys.
const (
	prefLastRecipe = "lastRecipe"
	prefCacheDir   = "cacheDir"
	prefOutDir     = "outDir"
	prefServeAddr  = "serveAddr"
)

// DefaultServeAddr is where the update server listens unless the user chose otherwise.
const DefaultServeAddr = "0.0.0.0:8470"

// WindowSize is the main window's initial size (and the size the screen goldens are rendered at).
var WindowSize = fyne.NewSize(1100, 720)

// onUI runs f on the UI thread, as every widget change from a background goroutine must. The tests
// replace it with a queue that the test goroutine runs, as Fyne's event loop does in the app (Fyne's
// test driver would run f at once on the calling goroutine, racing the test).
var onUI = fyne.Do

// Screen names, as accepted by KILN_SCREEN and shown on the tabs.
var screenNames = []string{"build", "flash", "preview", "serve"}

// App is the main window and its four screens.
type App struct {
	fa      fyne.App
	win     fyne.Window
	cores   Cores
	version string

	ctx    context.Context // cancelled when the window closes
	cancel context.CancelFunc
	ops    sync.WaitGroup // finite background work (a build, a flash), so the tests can wait for it
	loops  sync.WaitGroup // watchers that run until the app closes or their work ends

	tabs    *container.AppTabs
	build   *buildScreen
	flash   *flashScreen
	preview *previewScreen
	serve   *serveScreen

	mu      sync.Mutex
	current *BuildResult // the image the screens hand to each other
}

// Run opens the main window and blocks until it is closed. KILN_DEMO=1 runs the app on fake cores
// (no drive, VM or network is touched); KILN_SCREEN=build|flash|preview|serve opens that screen.
func Run(version string) (err error) {
	if err := displayAvailable(); err != nil {
		return err
	}
	// The windowing library panics when the display cannot be opened; say so instead.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot open a window (%v): check that DISPLAY or WAYLAND_DISPLAY names a running display server, or use the command line (kiln help)", p)
		}
	}()
	fa := fyneapp.NewWithID(AppID)
	fa.SetIcon(iconResource)
	w := fa.NewWindow("Kiln")
	cores := RealCores(fa.Preferences())
	demo := os.Getenv("KILN_DEMO")
	if demo != "" {
		cores = demoCores()
	}
	a := New(fa, w, cores, version)
	if s := os.Getenv("KILN_SCREEN"); s != "" {
		if err := a.Show(s); err != nil {
			return err
		}
	}
	if n, err := strconv.Atoi(os.Getenv("KILN_UI_RATE")); err == nil && n >= 1 && n <= maxUIRate {
		progressRate = n
	}
	stats := startUIStats(os.Getenv("KILN_UI_STATS"))
	if demo == "flash" {
		a.demoFlash(stats)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			onUI(fa.Quit)
		}
	}()
	w.ShowAndRun()
	signal.Stop(sigs)
	close(sigs)
	a.Close()
	return stats.finish()
}

// displayAvailable reports, on X11/Wayland systems, that a display server is named at all.
func displayAvailable() error {
	switch runtime.GOOS {
	case "darwin", "windows", "android", "ios":
		return nil
	}
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return errors.New("no display: DISPLAY and WAYLAND_DISPLAY are unset; start kiln from a desktop session, or use the command line (kiln help)")
	}
	return nil
}

// New builds the window's content over the given cores.
func New(fa fyne.App, w fyne.Window, cores Cores, version string) *App {
	a := &App{fa: fa, win: w, cores: cores, version: version}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.build = newBuildScreen(a)
	a.flash = newFlashScreen(a)
	a.preview = newPreviewScreen(a)
	a.serve = newServeScreen(a)

	a.tabs = container.NewAppTabs(
		container.NewTabItemWithIcon("Build", theme.DocumentCreateIcon(), a.build.content),
		container.NewTabItemWithIcon("Flash", theme.UploadIcon(), a.flash.content),
		container.NewTabItemWithIcon("Preview", theme.ComputerIcon(), a.preview.content),
		container.NewTabItemWithIcon("Serve", theme.StorageIcon(), a.serve.content),
	)
	a.tabs.SetTabLocation(container.TabLocationLeading)
	a.tabs.OnSelected = a.onTabSelected

	w.SetContent(a.tabs)
	w.SetMainMenu(a.menu())
	w.Resize(WindowSize)
	w.SetMaster()
	w.SetOnClosed(a.Close)
	a.shortcuts()

	a.build.start()
	a.flash.start()
	a.serve.start()
	return a
}

// Close cancels background work and stops what the screens started (VM, server).
func (a *App) Close() {
	a.cancel()
	a.preview.stopVM()
	a.serve.shutdown()
	a.ops.Wait()
	a.loops.Wait()
}

// Show selects a screen by name.
func (a *App) Show(name string) error {
	for i, n := range screenNames {
		if strings.EqualFold(n, name) {
			a.tabs.SelectIndex(i)
			return nil
		}
	}
	return fmt.Errorf("unknown screen %q: use one of %s", name, strings.Join(screenNames, ", "))
}

// Window returns the main window.
func (a *App) Window() fyne.Window { return a.win }

// Wait blocks until the finite background work started so far has finished.
func (a *App) Wait() { a.ops.Wait() }

// background runs a finite piece of work in a goroutine.
func (a *App) background(fn func()) {
	a.ops.Add(1)
	go func() {
		defer a.ops.Done()
		fn()
	}()
}

// watch runs a long-lived loop (a device watcher, a console reader) that must end when a.ctx ends.
func (a *App) watch(fn func()) {
	a.loops.Add(1)
	go func() {
		defer a.loops.Done()
		fn()
	}()
}

// Current returns the image the screens share (the last build, or the one picked on a screen).
func (a *App) Current() *BuildResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

func (a *App) setCurrent(b *BuildResult) {
	a.mu.Lock()
	a.current = b
	a.mu.Unlock()
}

// onTabSelected refreshes the image pickers so a fresh build shows up everywhere.
func (a *App) onTabSelected(t *container.TabItem) {
	switch t.Content {
	case a.flash.content:
		a.flash.picker.Refresh()
	case a.preview.content:
		a.preview.picker.Refresh()
	case a.serve.content:
		a.serve.refresh()
	}
}

// carry hands the current build to another screen and shows it.
func (a *App) carry(b *BuildResult, screen string) {
	a.setCurrent(b)
	_ = a.Show(screen)
	switch screen {
	case "flash":
		a.flash.setImage(b.Image)
	case "preview":
		a.preview.setImage(b.Image)
	case "serve":
		a.serve.publishCurrent()
	}
}

func (a *App) menu() *fyne.MainMenu {
	file := fyne.NewMenu("File",
		fyne.NewMenuItem("New recipe", a.build.onNew),
		fyne.NewMenuItem("Open recipe…", a.build.onOpen),
		fyne.NewMenuItem("Save recipe", a.build.onSave),
		fyne.NewMenuItem("Save recipe as…", a.build.onSaveAs),
		fyne.NewMenuItemSeparator(),
		fyne.NewMenuItem("Preferences…", a.showPreferences),
	)
	help := fyne.NewMenu("Help", fyne.NewMenuItem("About Kiln", a.showAbout))
	return fyne.NewMainMenu(file, help)
}

func (a *App) shortcuts() {
	c := a.win.Canvas()
	for i := range screenNames {
		key := fyne.KeyName(fmt.Sprint(i + 1))
		c.AddShortcut(&desktop.CustomShortcut{KeyName: key, Modifier: fyne.KeyModifierShortcutDefault},
			func(fyne.Shortcut) { a.tabs.SelectIndex(i) })
	}
	c.AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyQ, Modifier: fyne.KeyModifierShortcutDefault},
		func(fyne.Shortcut) { a.win.Close() })
	c.AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyS, Modifier: fyne.KeyModifierShortcutDefault},
		func(fyne.Shortcut) { a.build.onSave() })
	c.AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyO, Modifier: fyne.KeyModifierShortcutDefault},
		func(fyne.Shortcut) { a.build.onOpen() })
}

// showError shows err in a dialog titled with what failed, followed by what to do next.
func (a *App) showError(what string, err error, next string) {
	msg := err.Error()
	if next != "" {
		msg += "\n\n" + next
	}
	text := widget.NewLabel(msg)
	text.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustom(what, "Close", container.NewGridWrap(fyne.NewSize(480, text.MinSize().Height*2), text), a.win)
	d.Show()
}

// pref returns a string preference with a fallback.
func (a *App) pref(key, def string) string {
	return a.fa.Preferences().StringWithFallback(key, def)
}

func (a *App) setPref(key, v string) { a.fa.Preferences().SetString(key, v) }

func (a *App) showPreferences() {
	cache := widget.NewEntry()
	cache.SetText(a.pref(prefCacheDir, defaultCacheDir()))
	out := widget.NewEntry()
	out.SetText(a.pref(prefOutDir, defaultOutDir()))
	addr := widget.NewEntry()
	addr.SetText(a.pref(prefServeAddr, DefaultServeAddr))
	items := []*widget.FormItem{
		{Text: "Input cache", Widget: cache, HintText: "Where Kiln keeps downloaded kernel and busybox packages"},
		{Text: "Build output", Widget: out, HintText: "Images are written to a folder per recipe and version here"},
		{Text: "Serve address", Widget: addr, HintText: "host:port the update server listens on"},
	}
	d := dialog.NewForm("Preferences", "Save", "Cancel", items, func(ok bool) {
		if !ok {
			return
		}
		a.setPref(prefCacheDir, cache.Text)
		a.setPref(prefOutDir, out.Text)
		a.setPref(prefServeAddr, addr.Text)
		a.serve.addr.SetText(addr.Text)
	}, a.win)
	d.Resize(fyne.NewSize(560, 300))
	d.Show()
}

// licences lists what the app and the images it builds are made of.
const licences = `Kiln is free software under the MIT licence. Source code: https://github.com/kilnproject/kiln

The app is built with: Fyne (BSD-3-Clause), go-diskfs (MIT), go-tuf (Apache-2.0),
BurntSushi/toml (MIT), logrus (MIT), dnssd (MIT), klauspost/compress (BSD-3-Clause),
xi2/xz (public domain), gousb (Apache-2.0), progressbar (MIT), golang.org/x (BSD-3-Clause).

Images Kiln builds contain: the Linux kernel (GPL-2.0), BusyBox (GPL-2.0) and
systemd-boot (LGPL-2.1-or-later), taken unmodified from Debian packages.`

func (a *App) showAbout() {
	title := widget.NewLabelWithStyle("Kiln "+a.version, fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	sub := widget.NewLabelWithStyle("Build, flash, preview and serve bootable OS images",
		fyne.TextAlignCenter, fyne.TextStyle{Italic: true})
	icon := widget.NewIcon(iconResource)
	lic := widget.NewLabel(licences)
	lic.Wrapping = fyne.TextWrapWord
	body := container.NewBorder(
		container.NewVBox(container.NewCenter(container.NewGridWrap(fyne.NewSize(96, 96), icon)), title, sub,
			widget.NewSeparator()), nil, nil, nil, container.NewVScroll(lic))
	d := dialog.NewCustom("About Kiln", "Close", body, a.win)
	d.Resize(fyne.NewSize(640, 520))
	d.Show()
}

func defaultCacheDir() string {
	if d, err := assembler.DefaultCache(); err == nil {
		return d
	}
	return ".kiln-cache"
}

func defaultOutDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, "Kiln")
	}
	return "out"
}

// uiStatsRun measures, for the benchmarks, how the UI thread keeps up while uiMeasuring is set (a
// demo flash): a heartbeat queued with onUI every 10 ms records how late it runs (the time the UI
// thread could not respond), and the bridge counts progress events in and UI updates out.
type uiStatsRun struct {
	path  string
	stop  chan struct{}
	done  chan struct{}
	start time.Time

	mu       sync.Mutex
	lags     []time.Duration
	measured time.Duration // time uiMeasuring was set
	since    time.Time
}

// uiMeasuring is set while the figures are taken.
var uiMeasuring atomic.Bool

func startUIStats(path string) *uiStatsRun {
	s := &uiStatsRun{path: path, start: time.Now()}
	if path == "" {
		return s
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case sent := <-t.C:
				if !uiMeasuring.Load() {
					continue
				}
				onUI(func() {
					lag := time.Since(sent)
					s.mu.Lock()
					s.lags = append(s.lags, lag)
					s.mu.Unlock()
				})
			}
		}
	}()
	return s
}

// measure starts or stops taking the figures.
func (s *uiStatsRun) measure(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		uiStats.events.Store(0)
		uiStats.updates.Store(0)
		uiStats.maxCallback.Store(0)
		s.since = time.Now()
	} else if uiMeasuring.Load() {
		s.measured += time.Since(s.since)
	}
	uiMeasuring.Store(on)
}

func (s *uiStatsRun) finish() error {
	if s.path == "" {
		return nil
	}
	s.measure(false)
	close(s.stop)
	<-s.done
	s.mu.Lock()
	lags := append([]time.Duration(nil), s.lags...)
	measured := s.measured
	s.mu.Unlock()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var maxLag, p99 time.Duration
	over := 0
	if n := len(lags); n > 0 {
		maxLag, p99 = lags[n-1], lags[n*99/100]
		for _, l := range lags {
			if l > 100*time.Millisecond {
				over++
			}
		}
	}
	out := map[string]any{
		"progress_events":   uiStats.events.Load(),
		"ui_updates":        uiStats.updates.Load(),
		"max_callback_ms":   float64(uiStats.maxCallback.Load()) / 1e6,
		"max_ui_lag_ms":     ms(maxLag),
		"p99_ui_lag_ms":     ms(p99),
		"stalls_over_100ms": over,
		"heartbeats":        len(lags),
		"run_seconds":       measured.Seconds(),
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.path, data, 0o644); err != nil {
		return fmt.Errorf("write UI stats: %w", err)
	}
	return nil
}

// errCancelled reports whether err is a cancellation the user asked for.
func errCancelled(err error) bool { return errors.Is(err, context.Canceled) }

// iconResource is the application icon.
var iconResource = fyne.NewStaticResource("kiln.png", assets.IconPNG)
