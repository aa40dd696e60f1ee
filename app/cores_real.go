package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/discovery"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
	"github.com/kilnproject/kiln/vmrunner"
)

// RealCores returns the adapters over Kiln's core packages. Folders (input cache, build output,
// update repository) are read from prefs at the time of each call.
func RealCores(prefs fyne.Preferences) Cores {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.WarnLevel)
	st := &settings{prefs: prefs, log: log}
	return Cores{
		Build:   &realBuild{st: st},
		Flash:   &realFlash{st: st},
		Preview: &realPreview{st: st},
		Serve:   &realServe{st: st},
	}
}

// settings reads the folders the adapters work in.
type settings struct {
	prefs fyne.Preferences
	log   *logrus.Logger
}

func (s *settings) cacheDir() string {
	return s.prefs.StringWithFallback(prefCacheDir, defaultCacheDir())
}
func (s *settings) outDir() string  { return s.prefs.StringWithFallback(prefOutDir, defaultOutDir()) }
func (s *settings) repoDir() string { return filepath.Join(s.outDir(), "update-repository") }

// realBuild adapts assembler and assembler/recipe.
type realBuild struct {
	st     *settings
	mu     sync.Mutex
	recent []BuildResult // built in this session, newest first

	idxMu   sync.Mutex
	indexes map[string]PackageIndex // by archive sources and architecture, for this session
}

// Packages loads the package index of the recipe's archive (the sources a build uses) through
// an on-disk index cache in the input cache, and keeps it for the session.
func (b *realBuild) Packages(ctx context.Context, f *Recipe, p progress.Func) (PackageIndex, error) {
	r := fromForm(f)
	srcs, err := assembler.ArchiveSources(r)
	if err != nil {
		return nil, err
	}
	arch := r.DebianArch()
	cache := defaultCacheDir()
	if b.st != nil {
		cache = b.st.cacheDir()
	}
	key := fmt.Sprintf("%s %+v", arch, srcs)
	b.idxMu.Lock()
	ix := b.indexes[key]
	b.idxMu.Unlock()
	if ix != nil {
		return ix, nil
	}
	c := &archive.Client{Sources: srcs, Arches: []string{arch}, Progress: p,
		HTTP: &http.Client{Transport: &archive.IndexCache{Dir: filepath.Join(cache, "indices")}}}
	a, err := c.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("package index: %w", err)
	}
	ix = archiveIndex{archive.NewIndex(a)}
	b.idxMu.Lock()
	if b.indexes == nil {
		b.indexes = map[string]PackageIndex{}
	}
	b.indexes[key] = ix
	b.idxMu.Unlock()
	return ix, nil
}

func (b *realBuild) New() (*Recipe, error) { return toForm(recipe.Default()), nil }

func (b *realBuild) Load(path string) (*Recipe, error) {
	r, err := recipe.Load(path)
	if err != nil {
		return nil, err
	}
	return toForm(r), nil
}

func (b *realBuild) Save(f *Recipe, path string) error {
	r := fromForm(f)
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	head := "# Kiln recipe, saved by the Kiln app. Fields not set here take the built-in defaults.\n"
	if err := os.WriteFile(path, append([]byte(head), data...), 0o644); err != nil {
		return fmt.Errorf("save recipe %s: %w", path, err)
	}
	return nil
}

func (b *realBuild) Validate(f *Recipe) []FieldError {
	err := fromForm(f).Validate()
	var re *recipe.Error
	if !errors.As(err, &re) {
		if err != nil {
			return []FieldError{{Field: "", Message: err.Error()}}
		}
		return nil
	}
	out := make([]FieldError, 0, len(re.Problems))
	for _, p := range re.Problems {
		msg := p.Msg
		if p.Hint != "" {
			msg += "; " + p.Hint
		}
		out = append(out, FieldError{Field: p.Field, Message: msg})
	}
	return out
}

func (b *realBuild) Build(ctx context.Context, f *Recipe, p progress.Func) (*BuildResult, error) {
	r := fromForm(f)
	agent, err := assembler.FindAgent()
	if err != nil {
		return nil, err
	}
	epoch, err := assembler.SourceDateEpoch()
	if err != nil {
		return nil, err
	}
	keys, err := repo.OwnerKeys()
	if err != nil {
		return nil, fmt.Errorf("load the update signing keys: %w", err)
	}
	res, err := assembler.Build(ctx, r, assembler.Options{
		OutDir: filepath.Join(b.st.outDir(), r.Name+"-"+r.Version), Cache: b.st.cacheDir(), Agent: agent,
		TrustedRoot: keys.Root, SourceDateEpoch: epoch, Progress: p, Log: b.st.log,
	})
	if err != nil {
		return nil, err
	}
	out := BuildResult{Name: res.Name, Version: res.Version, Image: res.Image, Bmap: res.Bmap,
		Manifest: res.Manifest, UpdateDir: res.UpdateDir, SHA256: res.ImageSHA256, Size: res.ImageSize, Warnings: res.Warnings}
	b.mu.Lock()
	b.recent = append([]BuildResult{out}, b.recent...)
	b.mu.Unlock()
	return &out, nil
}

// Builds lists this session's builds and the builds found in the output folder, newest first.
func (b *realBuild) Builds() []BuildResult {
	b.mu.Lock()
	out := append([]BuildResult(nil), b.recent...)
	b.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range out {
		seen[r.Image] = true
	}
	dirs, _ := filepath.Glob(filepath.Join(b.st.outDir(), "*", "update", "update.json"))
	type found struct {
		BuildResult
		mod time.Time
	}
	var fs []found
	for _, u := range dirs {
		data, err := os.ReadFile(u)
		if err != nil {
			continue
		}
		var meta ota.Bundle
		if json.Unmarshal(data, &meta) != nil || meta.Name == "" {
			continue
		}
		dir := filepath.Dir(filepath.Dir(u))
		img := filepath.Join(dir, meta.Name+".img")
		st, err := os.Stat(img)
		if err != nil || seen[img] {
			continue
		}
		fs = append(fs, found{BuildResult{Name: meta.Name, Version: meta.Version, Image: img,
			Bmap: img + ".bmap", Manifest: filepath.Join(dir, "manifest.json"), UpdateDir: filepath.Dir(u),
			Size: st.Size()}, st.ModTime()})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod.After(fs[j].mod) })
	for _, f := range fs {
		out = append(out, f.BuildResult)
	}
	return out
}

// toForm copies the fields the form edits out of r; r itself travels in Base.
func toForm(r *recipe.Recipe) *Recipe {
	f := &Recipe{Path: r.Path, Name: r.Name, Version: r.Version, Hostname: r.System.Hostname,
		Timezone: r.System.Timezone, DiskSize: r.Board.DiskSize.String(), Board: r.BoardRef(), Firmware: r.Board.Firmware,
		Overlays: append([]string(nil), r.System.Overlays...), Base: r}
	if len(r.System.Users) > 0 {
		u := r.System.Users[0]
		f.User, f.PasswordHash, f.SSHKeys = u.Name, u.PasswordHash, append([]string(nil), u.SSHKeys...)
	}
	if w := r.System.WiFi; w != nil {
		f.WifiSSID, f.WifiPSK, f.WifiCountry = w.SSID, w.PSK, w.Country
	}
	for _, file := range r.System.Files {
		f.Files = append(f.Files, RecipeFile{Path: file.Path, Source: file.Source, Content: file.Content, Mode: uint32(file.Mode)})
	}
	f.Packages = append([]string(nil), r.System.Packages...)
	for _, sv := range r.System.Services {
		f.Services = append(f.Services, RecipeService(sv))
	}
	return f
}

// fromForm applies the form to a copy of its base recipe.
func fromForm(f *Recipe) *recipe.Recipe {
	base, _ := f.Base.(*recipe.Recipe)
	if base == nil {
		base = recipe.Default()
	}
	r := *base
	r.System.Users = append([]recipe.User(nil), base.System.Users...)
	r.Name, r.Version = f.Name, f.Version
	if f.Path != "" {
		r.Path, r.Dir = f.Path, filepath.Dir(f.Path)
	}
	r.System.Hostname, r.System.Timezone = f.Hostname, f.Timezone
	if f.Board != "" && f.Board != base.BoardRef() { // another board: its defaults, then the form's fields
		r.Board.Name = f.Board
		if b, err := r.LoadBoard(); err == nil {
			r.ApplyBoard(b, nil)
		}
	}
	r.Board.Firmware = f.Firmware
	if z, err := recipe.ParseSize(f.DiskSize); err == nil {
		r.Board.DiskSize = z
	} else {
		r.Board.DiskSize = -1 // the validator reports it
	}
	switch {
	case f.User == "" && len(r.System.Users) > 0:
		r.System.Users = r.System.Users[1:]
	case f.User != "":
		u := recipe.User{}
		if len(r.System.Users) > 0 {
			u = r.System.Users[0]
		}
		u.Name, u.PasswordHash, u.SSHKeys = f.User, f.PasswordHash, f.SSHKeys
		if len(r.System.Users) > 0 {
			r.System.Users[0] = u
		} else {
			r.System.Users = []recipe.User{u}
		}
	}
	if f.WifiSSID != "" {
		r.System.WiFi = &recipe.WiFi{SSID: f.WifiSSID, PSK: f.WifiPSK, Country: f.WifiCountry}
	} else {
		r.System.WiFi = nil
	}
	var files []recipe.File
	for _, file := range f.Files {
		files = append(files, recipe.File{Path: file.Path, Source: file.Source, Content: file.Content, Mode: recipe.Mode(file.Mode)})
	}
	r.System.Files = files
	r.System.Overlays = append([]string(nil), f.Overlays...)
	r.System.Packages = append([]string(nil), f.Packages...)
	r.System.Services = nil
	for _, sv := range f.Services {
		r.System.Services = append(r.System.Services, recipe.Service(sv))
	}
	return &r
}

// realFlash adapts flasher. As root it flashes in-process; otherwise it runs `kiln flash-helper`
// through pkexec, which applies the same safety rules with administrator rights.
type realFlash struct{ st *settings }

// LANCatalogue finds a Kiln update server on the LAN (DNS-SD) and names its catalogue of
// published disk images.
func (f *realFlash) LANCatalogue(ctx context.Context) (string, string, error) {
	found, err := discovery.Browse(ctx, "", 4*time.Second)
	if err != nil {
		return "", "", err
	}
	return found.Name, strings.TrimSuffix(found.URL, "/") + "/" + repo.CatalogFile, nil
}

func (f *realFlash) Devices(ctx context.Context) ([]Device, []HiddenDevice, error) {
	all, err := flasher.List(true)
	if err != nil {
		return nil, nil, err
	}
	var offered []Device
	var hidden []HiddenDevice
	for _, d := range all {
		dev := Device{Path: d.Path, Model: d.Model, Vendor: d.Vendor, Serial: d.Serial, Bus: d.Transport,
			Size: d.Size, Removable: d.Removable, Mounts: d.RemovableMounts()}
		for _, p := range d.Partitions {
			dev.Partitions = append(dev.Partitions, Partition{Name: p.Name, Label: p.Label, FSType: p.FSType,
				Mountpoint: strings.Join(p.Mounts, ", "), Size: p.Size})
		}
		if dev.Model == "" && d.USB != nil {
			dev.Vendor, dev.Model = d.USB.Manufacturer, d.USB.Product
		}
		if h, why := d.Hidden(); h {
			hidden = append(hidden, HiddenDevice{Device: dev, Reason: why})
			continue
		}
		offered = append(offered, dev)
	}
	return offered, hidden, nil
}

func (f *realFlash) Changes(ctx context.Context) <-chan struct{} {
	return flasher.Watch(ctx, time.Second)
}

func (f *realFlash) Flash(ctx context.Context, img string, devs []string, p progress.Func) ([]FlashResult, error) {
	return f.FlashWithSettings(ctx, img, devs, nil, p)
}

// FlashWithSettings flashes and writes first-boot settings (nil: none) into the image on the way.
func (f *realFlash) FlashWithSettings(ctx context.Context, img string, devs []string, set *customise.Settings, p progress.Func) ([]FlashResult, error) {
	var (
		res []flasher.Result
		err error
	)
	info := imageInfoFrom(ctx)
	if os.Geteuid() == 0 {
		opts := flasher.Options{Progress: p, Eject: true, Log: f.st.log,
			DownloadSHA256: info.DownloadSHA256, ImageSHA256: info.ImageSHA256, SizeHint: info.Size}
		if set != nil {
			c, cerr := customise.New(*set)
			if cerr != nil {
				return nil, cerr
			}
			opts.Customise = c
		}
		res, err = flasher.Flash(ctx, img, devs, opts)
	} else {
		exe, xerr := os.Executable()
		if xerr != nil {
			return nil, fmt.Errorf("flash: find the kiln executable: %w", xerr)
		}
		var expect []flasher.Device
		for _, d := range devs {
			if dev, lerr := flasher.Lookup(d); lerr == nil {
				expect = append(expect, dev)
			}
		}
		cmd, cerr := flasher.HelperCommand(ctx, exe)
		if cerr != nil {
			return nil, cerr
		}
		res, err = flasher.RunHelper(ctx, cmd, flasher.HelperRequest{Image: img, Devices: devs, Eject: true, Expect: expect,
			DownloadSHA256: info.DownloadSHA256, ImageSHA256: info.ImageSHA256, SizeHint: info.Size, Settings: set}, p)
	}
	out := make([]FlashResult, 0, len(res))
	for _, r := range res {
		out = append(out, FlashResult{Device: r.Device, Written: r.Written, Verified: r.Verified,
			Elapsed: time.Duration(r.Seconds * float64(time.Second)), Err: r.Err, Note: strings.Join(append([]string{r.Customised}, r.Warnings...), " ")})
	}
	return out, err
}

// flashAdvice says what to do about each of the flasher's error states.
var flashAdvice = []struct {
	err    error
	advice string
}{
	{flasher.ErrTooSmall, "Use a larger drive, or build the image with a smaller disk size."},
	{flasher.ErrBusy, "Close programs and file windows using the drive, then try again."},
	{flasher.ErrReadOnly, "Slide the write-protect switch on the SD card or adapter to unlocked."},
	{flasher.ErrIdentityChanged, "The drive was swapped: check which drive is plugged in and choose it again."},
	{flasher.ErrRemoved, "Plug the drive in again (try another port) and flash it again."},
	{flasher.ErrPermission, "Flashing needs administrator rights: accept the password prompt, or run 'sudo kiln flash'."},
	{flasher.ErrVerify, "The drive did not keep what was written: it may be failing. Try another drive."},
	{flasher.ErrChecksum, "The image is not the published one (or was damaged in transit): the drive does not boot. Try again, or check the catalogue."},
	{flasher.ErrIncomplete, "Flash the drive again before using it."},
	{flasher.ErrSource, "The image file is damaged: download or build it again."},
	{flasher.ErrSystemDrive, "Kiln never writes to the drive your computer runs from. Choose a USB stick or SD card."},
	{flasher.ErrInternal, "Internal disks are refused in the app; use 'kiln flash --allow-internal' if you really mean it."},
	{flasher.ErrImageOnDevice, "Copy the image to another drive first."},
	{flasher.ErrNotBlockDevice, "Choose a drive from the list."},
}

func (f *realFlash) Advice(err error) string {
	for _, a := range flashAdvice {
		if errors.Is(err, a.err) {
			return a.advice
		}
	}
	if errors.Is(err, context.Canceled) {
		return "The drive holds an incomplete image: flash it again before use."
	}
	return "Unplug and replug the drive, then try again."
}

// realPreview adapts vmrunner.
type realPreview struct{ st *settings }

func (p *realPreview) Start(ctx context.Context, o PreviewOptions) (VM, error) {
	cfg := vmrunner.Config{Image: o.Image, Machine: assembler.PreviewMachine(o.Image), Display: vmrunner.DisplayVNC,
		MemoryMiB: o.MemoryMB, Log: p.st.log}
	switch o.Firmware {
	case "uefi":
		cfg.Firmware = vmrunner.FirmwareUEFI
	case "bios":
		cfg.Firmware = vmrunner.FirmwareBIOS
	case "":
	default:
		cfg.Firmware, cfg.FirmwareFile = vmrunner.FirmwareFile, o.Firmware
	}
	if o.AsUSB {
		cfg.Attach = vmrunner.AttachUSB
	}
	vm, err := vmrunner.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &realVM{vm: vm, serial: vm.Serial()}, nil
}

func (p *realPreview) Firmware(image string) (string, error) { return imageFirmware(image) }

// imageFirmware is vmrunner's choice for an image: the one the CLI makes with --firmware auto.
func imageFirmware(image string) (string, error) {
	info, err := vmrunner.Inspect(image)
	if err != nil {
		return "", err
	}
	return string(info.Firmware()), nil
}

type realVM struct {
	vm     *vmrunner.VM
	serial io.ReadCloser
}

func (v *realVM) Serial() io.Reader   { return v.serial }
func (v *realVM) SerialIn() io.Writer { return v.vm.SerialInput() }
func (v *realVM) VNCSocket() string   { return v.vm.Info().VNCSocket }
func (v *realVM) Screendump(ctx context.Context) (image.Image, error) {
	return v.vm.Screenshot(ctx)
}
func (v *realVM) Accelerator() (string, string) {
	a := v.vm.Info().Accel
	return string(a.Accel), a.Reason
}
func (v *realVM) Stop() error           { err := v.vm.Stop(); v.serial.Close(); return err }
func (v *realVM) Done() <-chan struct{} { return v.vm.Done() }
func (v *realVM) Err() error            { return v.vm.Wait() }

// realServe adapts ota/server and ota/repo. The device table lives in the same database as
// kiln serve's (fleet.DefaultPath), open while the server runs.
type realServe struct {
	st    *settings
	mu    sync.Mutex
	srv   *server.Server
	store *fleet.DB
}

func (s *realServe) Start(ctx context.Context, addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil && s.srv.Running() {
		return s.srv.URL(), nil
	}
	if _, err := repo.Load(s.st.repoDir()); err != nil {
		return "", fmt.Errorf("no update repository in %s yet: %w", s.st.repoDir(), errNothingPublished)
	}
	// Announce on the LAN unless the server only listens on this machine.
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	advertise := host != "localhost" && (ip == nil || !ip.IsLoopback())
	if s.store != nil { // left by a server that stopped by itself
		s.store.Close()
		s.store = nil
	}
	db, err := fleet.DefaultPath()
	if err != nil {
		return "", err
	}
	store, err := fleet.Open(ctx, db, 0)
	if err != nil {
		return "", err
	}
	srv, err := server.New(server.Config{Repo: s.st.repoDir(), Addr: addr, Advertise: advertise, OwnerKeys: true,
		Log: s.st.log, Store: store})
	if err == nil {
		err = srv.Start(context.WithoutCancel(ctx))
	}
	if err != nil {
		store.Close()
		return "", err
	}
	s.srv, s.store = srv, store
	return srv.URL(), nil
}

// errNothingPublished: the server has nothing to serve until a build is published.
var errNothingPublished = errors.New(`publish a build first ("Publish current build")`)

func (s *realServe) Stop() error {
	s.mu.Lock()
	srv, store := s.srv, s.store
	s.srv, s.store = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Stop(ctx)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *realServe) Warning() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil || !s.srv.Running() {
		return ""
	}
	if err := s.srv.SigningError(); err != nil {
		return err.Error()
	}
	return ""
}

func (s *realServe) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil && s.srv.Running()
}

func (s *realServe) Versions() ([]PublishedVersion, error) {
	r, err := repo.Load(s.st.repoDir())
	if err != nil {
		return nil, nil // nothing published yet
	}
	ts, err := r.List()
	if err != nil {
		return nil, err
	}
	var out []PublishedVersion
	for _, t := range ts {
		if t.Kind != ota.KindFull { // deltas and roots belong to a full target listed as well
			continue
		}
		out = append(out, targetVersion(t))
	}
	sort.Slice(out, func(i, j int) bool { return recipe.CompareVersions(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

func targetVersion(t ota.Target) PublishedVersion {
	return PublishedVersion{Name: t.Name, Version: t.Version, Channel: t.Channel, MinFrom: t.MinFrom,
		MaxFrom: t.MaxFrom, Size: t.Size + t.RootSize}
}

func (s *realServe) Devices() []DeviceStatus {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	var out []DeviceStatus
	for _, d := range srv.Devices() {
		out = append(out, DeviceStatus{ID: d.ID, Hostname: d.Name, Address: d.Addr, Version: d.Version,
			State: d.State, LastSeen: d.LastSeen})
	}
	return out
}

func (s *realServe) server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

func (s *realServe) Rollouts() []RolloutStatus {
	srv := s.server()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := srv.Rollouts(ctx)
	if err != nil {
		s.st.log.WithError(err).Warn("read the rollouts")
	}
	var out []RolloutStatus
	for _, r := range rs {
		out = append(out, RolloutStatus{Version: r.Version, Share: fleet.FormatShare(r.Share), Paused: r.Paused,
			Reason: r.Reason, Tried: r.Tried, Failed: r.RolledBack})
	}
	return out
}

func (s *realServe) History(id string) ([]DeviceEvent, error) {
	srv := s.server()
	if srv == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := srv.History(ctx, id, 0)
	var out []DeviceEvent
	for _, e := range evs {
		out = append(out, DeviceEvent{Time: e.Time, State: e.State, Version: e.Version, Target: e.Target, Message: e.Message})
	}
	return out, err
}

func (s *realServe) Publish(ctx context.Context, b *BuildResult) (*PublishedVersion, error) {
	keys, err := repo.OwnerKeys()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.st.repoDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create the update repository %s: %w", s.st.repoDir(), err)
	}
	p, err := repo.Publish(ctx, s.st.repoDir(), keys, b.UpdateDir, repo.Options{Log: s.st.log})
	if err != nil {
		return nil, err
	}
	// The disk image too, listed in the repository's catalogue for flashing new devices.
	img, err := repo.BuildImage(b.UpdateDir, p.Target.Board)
	if err == nil && img != nil {
		_, err = repo.PublishImage(ctx, s.st.repoDir(), *img, repo.Options{Log: s.st.log})
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s is published as an update, but not its disk image: %w", p.Target.Name, p.Target.Version, err)
	}
	v := targetVersion(p.Target)
	v.Published = time.Now()
	return &v, nil
}

// compile-time checks
var (
	_ BuildCore   = (*realBuild)(nil)
	_ FlashCore   = (*realFlash)(nil)
	_ PreviewCore = (*realPreview)(nil)
	_ ServeCore   = (*realServe)(nil)
)
