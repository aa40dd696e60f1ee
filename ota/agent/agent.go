// Package agent is kiln-agent's logic on a device booted from a Kiln image: it confirms or rolls
// back the boot (systemd-boot boot counting), finds the update server (the recipe's URL or
// DNS-SD), verifies the signed metadata against the pinned trust root, streams the update into a
// new boot entry on the ESP and reboots into it.
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/delta"
	"github.com/kilnproject/kiln/ota/discovery"
	"github.com/kilnproject/kiln/ota/repo"
)

// Release is /etc/kiln/release.json, written into the image by the assembler.
type Release struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Arch        string `json:"arch"`
	Board       string `json:"board"`
	Channel     string `json:"channel"`
	Server      string `json:"server"`
	HealthCheck string `json:"health_check"`
	BootTries   int    `json:"boot_tries"`
}

// Config says where things are on the device; zero fields take the defaults of Kiln images.
type Config struct {
	Release string // /etc/kiln/release.json
	Root    string // /etc/kiln/root.json
	ESP     string // /boot/efi
	State   string // /data/kiln/ota
	EFIVars string // /sys/firmware/efi/efivars
	// PiBoot holds a Raspberry Pi image's FAT partitions mounted by number (1, 2, 3); with
	// autoboot.txt in 1 the agent updates through the firmware's tryboot (tryboot.go).
	PiBoot     string // /boot/rpi
	Cmdline    string // /proc/cmdline
	DeviceTree string // /proc/device-tree
	// A package image's A/B root slots (rootslot.go): the file naming the running slot, sysfs's
	// block devices and /dev; RootDevice returns "MAJOR:MINOR" of the device "/" is mounted from.
	RunningRoot string // ota.RunningRootFile
	SysBlock    string // /sys/class/block
	Dev         string // /dev
	RootDevice  func() (string, error)
	Interval    time.Duration
	// HealthTimeout bounds one run of the health check (default 2 min); HealthAttempts is how
	// many runs it gets, HealthPause the wait between them.
	HealthTimeout  time.Duration
	HealthAttempts int
	HealthPause    time.Duration
	// Reboot restarts the device (default: busybox reboot through init, then the syscall). It
	// returns when ctx ends (init's shutdown signals the agent) so that the agent exits and its
	// files on /data and the ESP can be unmounted.
	Reboot func(ctx context.Context) error
	// RebootTry restarts a Raspberry Pi with the firmware's one-shot tryboot flag.
	RebootTry func(ctx context.Context) error
	Log       *logrus.Logger
	HTTP      *client.Client // template for the server client (tests); BaseURL is filled in
}

func (c *Config) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Release, "/etc/kiln/release.json")
	def(&c.Root, "/etc/kiln/root.json")
	def(&c.ESP, "/boot/efi")
	def(&c.State, "/data/kiln/ota")
	def(&c.EFIVars, "/sys/firmware/efi/efivars")
	def(&c.PiBoot, "/boot/rpi")
	def(&c.Cmdline, "/proc/cmdline")
	def(&c.DeviceTree, "/proc/device-tree")
	def(&c.RunningRoot, ota.RunningRootFile)
	def(&c.SysBlock, "/sys/class/block")
	def(&c.Dev, "/dev")
	if c.RootDevice == nil {
		c.RootDevice = runningRootDev
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Minute
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = 2 * time.Minute
	}
	if c.HealthAttempts == 0 {
		c.HealthAttempts = 3
	}
	if c.HealthPause == 0 {
		c.HealthPause = 5 * time.Second
	}
	if c.Reboot == nil {
		c.Reboot = Reboot
	}
	if c.RebootTry == nil {
		c.RebootTry = RebootTryboot
	}
	if c.Log == nil {
		c.Log = logrus.New()
	}
}

// Agent is the device agent.
type Agent struct {
	cfg    Config
	rel    Release
	root   []byte
	fp     string
	id     string
	key    ed25519.PrivateKey // the device's identity (identity.go)
	log    *logrus.Logger
	server string // base URL in use
	// interval is the server's requested check interval (0: the configured one).
	interval time.Duration
	// unsent is the last report that could not be delivered; it goes with the next contact.
	unsent *ota.Report
	cur    Entry // the running entry
	curSHA string
	// tryNext: the next reboot carries the Pi firmware's tryboot flag.
	tryNext bool
	// runningRoot is the signed root target of the running version (package images), the base
	// of root deltas.
	runningRoot *ota.Target
}

// pending is what the agent remembers about an installed, not yet confirmed version.
type pending struct {
	Version string `json:"version"`
	Base    string `json:"base"`
	From    string `json:"from"`
	// Slot is the Raspberry Pi boot partition it went into; Rebooted is set just before the
	// trial reboot, so that an old-slot boot without it is a power cut, not a failed trial.
	// Tried is set by the trial boot's agent when it starts.
	Slot     int  `json:"slot,omitempty"`
	Rebooted bool `json:"rebooted,omitempty"`
	Tried    bool `json:"tried,omitempty"`
	// RootSlot is the root partition the update's root filesystem went into (package images).
	RootSlot string `json:"root_slot,omitempty"`
}

// New reads the release file and the trust root.
func New(cfg Config) (*Agent, error) {
	cfg.defaults()
	a := &Agent{cfg: cfg, log: cfg.Log}
	data, err := os.ReadFile(cfg.Release)
	if err != nil {
		return nil, fmt.Errorf("read release %s: %w", cfg.Release, err)
	}
	if err := json.Unmarshal(data, &a.rel); err != nil {
		return nil, fmt.Errorf("read release %s: %w", cfg.Release, err)
	}
	if a.rel.Name == "" || a.rel.Version == "" {
		return nil, fmt.Errorf("read release %s: name and version are required", cfg.Release)
	}
	if a.rel.BootTries <= 0 {
		a.rel.BootTries = 3
	}
	a.root, err = os.ReadFile(cfg.Root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read trust root %s: %w", cfg.Root, err)
	}
	if len(a.root) > 0 {
		if a.fp, err = repo.Fingerprint(a.root); err != nil {
			return nil, err
		}
	}
	if a.key, err = loadIdentity(a.keyFile()); err != nil {
		a.log.WithError(err).Warn("device identity")
	}
	a.id = ota.DeviceID(a.rel.Name, a.key.Public().(ed25519.PublicKey))
	return a, nil
}

func (a *Agent) linuxDir() string { return filepath.Join(a.cfg.ESP, "EFI", "Linux") }
func (a *Agent) base() string     { return a.rel.Name + "-" + a.rel.Version }

func (a *Agent) device() ota.Device {
	var skip []string
	if b, err := os.ReadFile(filepath.Join(a.cfg.State, "failed")); err == nil {
		skip = strings.Fields(string(b))
	}
	if len(skip) > 64 {
		skip = skip[len(skip)-64:]
	}
	return ota.Device{ID: a.id, Key: ota.KeyString(a.key.Public().(ed25519.PublicKey)), Name: a.rel.Name, Version: a.rel.Version, Arch: a.rel.Arch,
		Board: a.rel.Board, Channel: a.rel.Channel, SHA256: a.curSHA, Skip: skip}
}

// Run confirms (or gives up on) the running version, then checks for updates every interval
// until ctx ends or an update is installed and the device reboots.
func (a *Agent) Run(ctx context.Context) error {
	a.log.WithFields(logrus.Fields{"name": a.rel.Name, "version": a.rel.Version, "id": a.id}).Info("starting")
	if len(a.root) == 0 {
		a.log.Warn("no trust root (/etc/kiln/root.json): this image accepts no updates; rebuild it with kiln build")
	}
	if err := a.Assess(ctx); err != nil {
		if errors.Is(err, errRebooting) {
			return nil
		}
		a.log.WithError(err).Warn("boot assessment")
	}
	if len(a.root) == 0 {
		<-ctx.Done()
		return nil
	}
	retry := 5 * time.Second
	for {
		err := a.CheckAndInstall(ctx)
		wait := a.cfg.Interval
		if a.interval > 0 {
			wait = a.interval
		}
		switch {
		case errors.Is(err, errRebooting):
			return nil
		case errors.Is(err, ota.ErrNoUpdate), errors.Is(err, ota.ErrNoPath), err == nil:
			retry = 5 * time.Second
		case ctx.Err() != nil:
			return nil
		default:
			a.log.WithError(err).WithField("retry_in", retry).Warn("update check failed")
			a.server = "" // look for the server again
			wait, retry = min(wait, retry), min(2*retry, a.cfg.Interval)
		}
		jitter, _ := rand.Int(rand.Reader, big.NewInt(int64(wait/10)+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait + time.Duration(jitter.Int64())):
		}
	}
}

var errRebooting = errors.New("rebooting")

// Assess runs after boot. On a trial boot (the entry has a boot counter) it runs the health
// check, blesses the entry when it passes and reboots when it does not, so that systemd-boot
// tries again or falls back. On a normal boot after an install it notices a rollback.
func (a *Agent) Assess(ctx context.Context) error {
	if a.tryboot() {
		return a.assessTryboot(ctx)
	}
	if err := a.syncGRUB(a.bootedBIOS()); err != nil {
		a.log.WithError(err).Warn("GRUB boot slots")
	}
	defer func() {
		if err := a.syncGRUB(false); err != nil {
			a.log.WithError(err).Warn("GRUB boot slots")
		}
	}()
	cur, err := a.currentEntry()
	if err != nil {
		a.log.WithError(err).Warn("cannot find the running boot entry on the ESP; updates need the ESP at " + a.cfg.ESP)
	}
	a.cur = cur
	if cur.File != "" {
		a.curSHA, _ = sha256File(filepath.Join(a.linuxDir(), cur.File))
	}
	pend := a.loadPending()
	if cur.Counted {
		a.report(ctx, ota.StateBooted, a.rel.Version, fmt.Sprintf("trial boot, %d tries left", cur.Left))
		if msg, ok := a.health(ctx); !ok {
			a.log.WithFields(logrus.Fields{"version": a.rel.Version, "tries_left": cur.Left}).Warn("unhealthy: " + msg + "; rebooting so the boot loader retries or falls back")
			a.report(ctx, ota.StateUnhealthy, a.rel.Version, msg)
			return a.reboot(ctx)
		}
		blessed := a.base() + ".efi"
		if err := os.Rename(filepath.Join(a.linuxDir(), cur.File), filepath.Join(a.linuxDir(), blessed)); err != nil {
			return fmt.Errorf("bless %s: %w", cur.File, err)
		}
		if err := atomicfile.SyncDir(a.linuxDir()); err != nil {
			return fmt.Errorf("bless %s: %w", cur.File, err)
		}
		a.cur = Entry{File: blessed, Base: a.base()}
		a.clearPending()
		a.log.WithField("version", a.rel.Version).Info("healthy")
		a.report(ctx, ota.StateHealthy, a.rel.Version, "new version confirmed: "+blessed)
		return nil
	}
	// Decide on a rollback only on what the ESP says: a read error (ESP not mounted yet, I/O
	// error) must not mark a good version as failed forever; the next start decides again.
	var undecided error
	if pend != nil && pend.Version != a.rel.Version {
		es, err := entries(a.linuxDir())
		switch {
		case err != nil:
			undecided = fmt.Errorf("cannot tell whether %s was rolled back: %w; deciding at the next start", pend.Version, err)
		case !onTrial(es, pend.Base):
			a.rolledBack(ctx, pend, es)
		}
	} else if pend != nil {
		a.clearPending()
	}
	a.reportHealth(ctx, pend)
	return undecided
}

// reportHealth runs the health check and reports its outcome: unhealthy always, healthy unless an
// installed update still waits for its trial boot (that boot reports it).
func (a *Agent) reportHealth(ctx context.Context, pend *pending) {
	msg, ok := a.health(ctx)
	if !ok {
		a.log.WithField("version", a.rel.Version).Warn("unhealthy: " + msg)
		a.report(ctx, ota.StateUnhealthy, a.rel.Version, msg)
		return
	}
	if pend == nil || pend.Version == a.rel.Version {
		a.log.WithField("version", a.rel.Version).Info("healthy")
		a.report(ctx, ota.StateHealthy, a.rel.Version, msg)
	}
}

// onTrial reports whether an entry of base still has boot tries left: then the old version
// runs although the new one was not given up on (a reboot that has not happened yet).
func onTrial(es []Entry, base string) bool {
	for _, e := range es {
		if e.Base == base && e.Counted && e.Left > 0 {
			return true
		}
	}
	return false
}

// rolledBack handles a boot of the old version after an installed one never became healthy;
// es are the ESP's entries.
func (a *Agent) rolledBack(ctx context.Context, p *pending, es []Entry) {
	for _, e := range es {
		if e.Base == p.Base {
			os.Remove(filepath.Join(a.linuxDir(), e.File))
		}
	}
	atomicfile.SyncDir(a.linuxDir())
	f, err := os.OpenFile(filepath.Join(a.cfg.State, "failed"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, p.Version)
		f.Sync()
		f.Close()
	}
	a.clearPending()
	msg := fmt.Sprintf("%s never became healthy; the boot loader went back to %s", p.Version, a.rel.Version)
	a.log.WithFields(logrus.Fields{"from": p.Version, "version": a.rel.Version}).Warn("rolled-back")
	a.report(ctx, ota.StateRolledBack, p.Version, msg)
}

// currentEntry finds the running UKI: the counted entry systemd-boot names in
// LoaderBootCountPath, else an entry of this name and version on the ESP.
func (a *Agent) currentEntry() (Entry, error) {
	es, err := entries(a.linuxDir())
	if err != nil {
		return Entry{}, err
	}
	if f := bootCountFile(a.cfg.EFIVars); f != "" {
		for _, e := range es {
			if e.File == f && e.Base == a.base() {
				return e, nil
			}
		}
	}
	var found Entry
	for _, e := range es {
		if e.Base != a.base() {
			continue
		}
		if !e.Counted {
			return e, nil // blessed
		}
		found = e
	}
	if found.File == "" {
		return Entry{}, fmt.Errorf("no %s.efi in %s", a.base(), a.linuxDir())
	}
	return found, nil
}

// health runs the release's health check ("" = healthy) up to HealthAttempts times.
func (a *Agent) health(ctx context.Context) (string, bool) {
	cmd := strings.TrimSpace(a.rel.HealthCheck)
	if cmd == "" {
		return "no health check configured: reaching the agent counts as healthy", true
	}
	var msg string
	for i := 0; i < a.cfg.HealthAttempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err().Error(), false
			case <-time.After(a.cfg.HealthPause):
			}
		}
		hctx, cancel := context.WithTimeout(ctx, a.cfg.HealthTimeout)
		out, err := exec.CommandContext(hctx, "/bin/sh", "-c", cmd).CombinedOutput()
		cancel()
		if err == nil {
			return "health check passed: " + cmd, true
		}
		tail := strings.TrimSpace(string(out))
		if len(tail) > 200 {
			tail = tail[len(tail)-200:]
		}
		msg = fmt.Sprintf("health check %q failed: %v %s", cmd, err, tail)
		a.log.WithField("attempt", i+1).Debug(msg)
	}
	return strings.TrimSpace(msg), false
}

func (a *Agent) loadPending() *pending {
	b, err := os.ReadFile(filepath.Join(a.cfg.State, "pending.json"))
	if err != nil {
		return nil
	}
	var p pending
	if json.Unmarshal(b, &p) != nil || p.Version == "" {
		return nil
	}
	return &p
}

func (a *Agent) savePending(p pending) error {
	if err := os.MkdirAll(a.cfg.State, 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(p)
	return atomicfile.Write(filepath.Join(a.cfg.State, "pending.json"), b, 0o644)
}

func (a *Agent) clearPending() {
	os.Remove(filepath.Join(a.cfg.State, "pending.json"))
	atomicfile.SyncDir(a.cfg.State)
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// client returns a client for the update server, finding it first if needed.
func (a *Agent) client(ctx context.Context) (*client.Client, error) {
	if a.server == "" {
		a.server = a.rel.Server
	}
	if a.server == "" {
		f, err := discovery.Browse(ctx, a.fp, 15*time.Second)
		if err != nil {
			return nil, fmt.Errorf("find update server: %w (set update.server in the recipe to skip discovery)", err)
		}
		a.log.WithFields(logrus.Fields{"url": f.URL, "name": f.Name}).Info("found update server")
		a.server = f.URL
	}
	c := &client.Client{}
	if a.cfg.HTTP != nil {
		*c = *a.cfg.HTTP
	}
	c.BaseURL, c.Key = a.server, a.key
	return c, nil
}

// report tells the server what happened, retrying for a little while (the network may still be
// coming up after a boot). A report that cannot be delivered is sent with the next contact.
func (a *Agent) report(ctx context.Context, state, target, msg string) {
	if len(a.root) == 0 {
		return
	}
	r := ota.Report{Device: a.device(), State: state, Target: target, Message: msg}
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
		var c *client.Client
		if c, err = a.client(ctx); err == nil {
			if err = c.Report(ctx, r); err == nil {
				a.unsent = nil
				return
			}
		}
		a.server = ""
	}
	a.log.WithError(err).WithField("state", state).Warn("report not delivered; it goes with the next check")
	a.unsent = &r
}

// CheckAndInstall asks the server for an update, verifies it against the trust root, installs
// it into a new boot entry and reboots. It returns ota.ErrNoUpdate when there is nothing to do.
func (a *Agent) CheckAndInstall(ctx context.Context) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	if u := a.unsent; u != nil {
		if err := c.Report(ctx, *u); err == nil {
			a.unsent = nil
		}
	}
	dev := a.device()
	resp, err := c.Check(ctx, dev)
	if err != nil {
		return err
	}
	offered := a.readCheck(resp)
	if !resp.Update {
		return ota.ErrNoUpdate
	}
	if ch := resp.Channel; ch != "" && len(ch) <= 64 {
		dev.Channel = ch // the owner moved this device to another channel
	}
	sel, err := a.selectSigned(ctx, c, dev, offered)
	if err != nil {
		return err
	}
	a.log.WithFields(logrus.Fields{"version": sel.Target.Version, "from": a.rel.Version}).Info("update available: " + sel.Message)
	if err := a.install(ctx, c, sel); err != nil {
		a.log.WithError(err).Error("install failed")
		a.report(ctx, ota.StateFailed, sel.Target.Version, err.Error())
		return err
	}
	return a.reboot(ctx)
}

// readCheck takes what it can use from the server's unsigned answer: the check interval
// (bounded) and, for messages only, the version offered ("" when the answer names none or
// a malformed one). Nothing else of it is trusted.
func (a *Agent) readCheck(resp *ota.CheckResponse) string {
	a.interval = 0
	if resp.Interval > 0 {
		a.interval = time.Duration(min(max(resp.Interval, 5), 24*3600)) * time.Second
	}
	a.log.Debug(clip(resp.Message, 200))
	if resp.Target == nil || ota.CheckVersion(resp.Target.Version) != nil {
		return ""
	}
	return resp.Target.Version
}

// selectSigned verifies the repository's metadata and chooses the update from the signed
// targets alone. The server's offer can only hold newer versions back (a staged rollout, the
// owner's hold): nothing newer than the offered version is installed.
func (a *Agent) selectSigned(ctx context.Context, c *client.Client, dev ota.Device, offered string) (ota.Selection, error) {
	v := &client.Verifier{Root: a.root, StateDir: a.cfg.State}
	verified, err := v.Update(ctx, c.Metadata)
	if err != nil {
		a.log.WithError(err).Error("update metadata rejected")
		a.report(ctx, ota.StateFailed, offered, "metadata rejected: "+err.Error())
		return ota.Selection{}, err
	}
	a.runningRoot = ota.RunningRoot(verified.Targets, dev)
	sel, err := ota.Select(upTo(verified.Targets, offered), dev)
	if err != nil {
		return sel, err
	}
	if sel.Target.Version != offered {
		a.log.WithFields(logrus.Fields{"server": offered, "signed": sel.Target.Version}).Warn("server offer differs from the signed targets; installing the signed choice")
	}
	return sel, nil
}

// upTo drops the full targets newer than version (none when version is "").
func upTo(targets []ota.Target, version string) []ota.Target {
	if version == "" {
		return targets
	}
	out := make([]ota.Target, 0, len(targets))
	for _, t := range targets {
		if t.Kind == ota.KindFull {
			if c, err := ota.CompareVersions(t.Version, version); err != nil || c > 0 {
				continue
			}
		}
		out = append(out, t)
	}
	return out
}

// clip shortens s to at most n bytes for a log line.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (a *Agent) install(ctx context.Context, c *client.Client, sel ota.Selection) error {
	t := *sel.Target
	// The version and name become a file name on the ESP: only SemVer characters, and only
	// this device's product, whatever the signed metadata says.
	if err := ota.CheckVersion(t.Version); err != nil {
		return fmt.Errorf("install: signed target %s: %w", t.Path, err)
	}
	if t.Name != a.rel.Name {
		return fmt.Errorf("install: signed target %s is for %q, not %q", t.Path, t.Name, a.rel.Name)
	}
	dir := a.linuxDir()
	pi := a.tryboot()
	if pi {
		// The download waits on /data; installSlot unpacks it into the spare boot partition.
		if err := os.MkdirAll(a.cfg.State, 0o755); err != nil {
			return fmt.Errorf("install %s: %w", t.Version, err)
		}
		dir = a.cfg.State
	}
	newBase := a.rel.Name + "-" + t.Version
	// Make room: keep the running entry (the fallback) and the partial download of this target.
	part := filepath.Join(dir, "."+newBase+".efi.part")
	if des, err := os.ReadDir(dir); err == nil {
		for _, de := range des {
			e, ok := ParseEntry(de.Name())
			stale := ok && e.File != a.cur.File && a.cur.File != ""
			if strings.HasSuffix(de.Name(), ".part") && de.Name() != filepath.Base(part) {
				stale = true
			}
			if stale {
				a.log.WithField("file", de.Name()).Info("removing old boot entry")
				os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	size := t.Size
	if sel.Root != nil {
		size += sel.Root.Size
	}
	a.report(ctx, ota.StateDownloading, t.Version, fmt.Sprintf("%d bytes", size))
	last := time.Time{}
	pf := progress.Func(func(e progress.Event) {
		if time.Since(last) > 10*time.Second || e.Done == e.Total {
			last = time.Now()
			a.log.WithFields(logrus.Fields{"version": t.Version, "done": e.Done, "total": e.Total}).Info(e.Phase)
		}
	})
	rootSlot := ""
	if sel.Root != nil {
		// No boot entry but the running one may name the spare slot while it is rewritten.
		if pi || a.cur.File == "" {
			return fmt.Errorf("install %s: a root filesystem update needs the running boot entry on the ESP (UEFI and BIOS boards)", t.Version)
		}
		if err := a.syncGRUB(false); err != nil {
			return fmt.Errorf("install %s: %w", t.Version, err)
		}
		var err error
		if rootSlot, err = a.installRoot(ctx, c, sel, pf); err != nil {
			return fmt.Errorf("install %s: %w", t.Version, err)
		}
	}
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("install %s: %w", t.Version, err)
	}
	defer f.Close()
	done := false
	if sel.Delta != nil && a.cur.File != "" && sel.Delta.FromSHA256 == a.curSHA {
		if err := a.applyDelta(ctx, c, *sel.Delta, t, f, pf); err != nil {
			a.log.WithError(err).Warn("delta failed; downloading the full update")
			if err := f.Truncate(0); err != nil {
				return err
			}
		} else {
			done = true
		}
	}
	if !done {
		if err := c.Download(ctx, t, f, pf); err != nil {
			if errors.Is(err, client.ErrHashMismatch) || errors.Is(err, client.ErrTooLong) {
				f.Truncate(0)
			}
			return fmt.Errorf("install %s: %w", t.Version, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("install %s: %w", t.Version, err)
	}
	if pi {
		defer os.Remove(part)
		p := pending{Version: t.Version, Base: newBase, From: a.rel.Version}
		if err := a.installSlot(part, p); err != nil {
			return fmt.Errorf("install %s: %w", t.Version, err)
		}
		a.report(ctx, ota.StateInstalled, t.Version, "next boot: trial of the spare boot partition")
		return nil
	}
	final := filepath.Join(dir, TrialName(newBase, a.rel.BootTries))
	if err := os.Rename(part, final); err != nil {
		return fmt.Errorf("install %s: %w", t.Version, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("install %s: %w", t.Version, err)
	}
	if err := a.savePending(pending{Version: t.Version, Base: newBase, From: a.rel.Version, RootSlot: rootSlot}); err != nil {
		return fmt.Errorf("install %s: remember the pending version: %w", t.Version, err)
	}
	if err := a.syncGRUB(false); err != nil {
		return fmt.Errorf("install %s: %w", t.Version, err)
	}
	a.log.WithFields(logrus.Fields{"version": t.Version, "entry": filepath.Base(final)}).Info("installed")
	a.report(ctx, ota.StateInstalled, t.Version, "next boot: "+filepath.Base(final))
	return nil
}

// applyDelta downloads the patch (to the state directory, resumable) and applies it to the
// running UKI, writing the result into f and checking it against the signed full target.
func (a *Agent) applyDelta(ctx context.Context, c *client.Client, d, full ota.Target, f *os.File, pf progress.Func) error {
	base, err := os.ReadFile(filepath.Join(a.linuxDir(), a.cur.File))
	if err != nil {
		return err
	}
	patch, cleanup, err := a.downloadPatch(ctx, c, d, pf)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	n, err := delta.Apply(ctx, io.MultiWriter(f, h), base, patch, full.Size)
	if err != nil {
		return err
	}
	if n != full.Size || hex.EncodeToString(h.Sum(nil)) != full.SHA256 {
		return fmt.Errorf("delta result: %w", client.ErrHashMismatch)
	}
	a.log.WithFields(logrus.Fields{"patch": d.Size, "full": full.Size}).Info("applied delta")
	return f.Sync()
}

// downloadPatch fetches delta d into the state directory (resumable) and returns it open at its
// start; cleanup closes and removes it.
func (a *Agent) downloadPatch(ctx context.Context, c *client.Client, d ota.Target, pf progress.Func) (*os.File, func(), error) {
	if len(d.SHA256) != 64 || len(d.FullSHA256) != 64 {
		return nil, nil, fmt.Errorf("delta %s: no sha256 in the signed metadata", d.Path)
	}
	if err := os.MkdirAll(a.cfg.State, 0o755); err != nil {
		return nil, nil, err
	}
	pp := filepath.Join(a.cfg.State, d.SHA256[:16]+".patch.part")
	pfile, err := os.OpenFile(pp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { pfile.Close(); os.Remove(pp) }
	if err := c.Download(ctx, d, pfile, pf); err != nil {
		cleanup()
		return nil, nil, err
	}
	if _, err := pfile.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, err
	}
	return pfile, cleanup, nil
}

func (a *Agent) reboot(ctx context.Context) error {
	reboot := a.cfg.Reboot
	if a.tryNext {
		a.tryNext = false
		if p := a.loadPending(); p != nil {
			p.Rebooted = true
			if err := a.savePending(*p); err != nil {
				return fmt.Errorf("reboot: %w", err)
			}
		}
		reboot = a.cfg.RebootTry
		a.log.Info("rebooting into the trial boot partition (tryboot)")
	} else {
		a.log.Info("rebooting")
	}
	if err := reboot(ctx); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return errRebooting
}
