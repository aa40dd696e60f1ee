package vmrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/workdir"
	"github.com/kilnproject/kiln/vmrunner/qmp"
)

// Errors a front end branches on.
var (
	ErrQEMUNotFound = errors.New("QEMU is not installed")
	// ErrExited: the VM ended before what was waited for happened.
	ErrExited = errors.New("the VM exited")
	// ErrPowerdownIgnored: the guest ignored the ACPI power button, so QEMU was told to quit.
	ErrPowerdownIgnored = errors.New("the guest did not power off")
	// ErrNoWindowDisplay: the QEMU build has no window toolkit (Debian ships it in qemu-system-gui).
	ErrNoWindowDisplay = errors.New("QEMU cannot open a window")
	// ErrGuestCrashed: the guest CPU stopped for good (an accelerator internal error or a guest
	// panic); QEMU was stopped rather than left showing a frozen screen.
	ErrGuestCrashed = errors.New("the guest CPU stopped")
	// ErrNoDisplay: a window was asked for outside a graphical session.
	ErrNoDisplay = errors.New("no graphical session for the preview window (DISPLAY and WAYLAND_DISPLAY are unset): use --headless or --vnc")
)

// Info describes a running VM.
type Info struct {
	Machine   string // the emulated machine: q35, virt
	QEMU      string
	Args      []string
	Format    Format
	Attach    Attach
	Firmware  FirmwareKind
	UEFI      *UEFIFirmware // when Firmware is FirmwareUEFI
	Accel     AccelChoice
	SSHPort   int    // host port on 127.0.0.1 forwarded to the guest's port 22
	VNCSocket string // when Display is DisplayVNC
	SerialLog string // the serial console log file (removed with the run directory unless Config.SerialLog was set)
	RunDir    string
	Image     string // the file attached: Config.Image, or Config.Persist
}

// VM is a running QEMU.
type VM struct {
	info   Info
	log    *logrus.Logger
	cmd    *exec.Cmd
	qmp    *qmp.Client
	serial net.Conn
	out    *consoleLog
	stderr *tailBuffer

	release    func()
	persistent bool // booted from Config.Persist: writes are kept
	done       chan struct{}
	exitErr    error
	crashErr   atomic.Pointer[error] // set when the guest CPU stopped for good
	probeCache string                // Config.ProbeCache, to record an accelerator that failed a real guest
	autoAccel  bool                  // the accelerator was chosen by ChooseAccel
	stopOnce   sync.Once
	shots      atomic.Int64
	png        atomic.Bool // screendump supports format=png
	events     chan qmp.Event
}

// Start boots cfg.Image and returns once the guest runs. Cancelling ctx stops the VM.
func Start(ctx context.Context, cfg Config) (vm *VM, err error) {
	log := logger(cfg.Log)
	if cfg.Machine == "" && IsPiImage(cfg.Image) {
		cfg.Machine = "raspi3b"
	}
	mach, err := LookupMachine(cfg.Machine)
	if err != nil {
		return nil, err
	}
	qemu, err := FindQEMUFor(cfg.QEMU, mach)
	if err != nil {
		return nil, err
	}
	spec, err := resolveSpec(ctx, qemu, cfg)
	if err != nil {
		return nil, err
	}
	sweepRunDirs(log)
	runDir, err := workdir.New("", runDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(runDir)
		}
	}()
	if err := placeRunFiles(&spec, cfg, runDir); err != nil {
		return nil, err
	}
	if err := prepareDisk(&spec, cfg, qemu, runDir); err != nil {
		return nil, err
	}
	if spec.Machine.Direct != nil {
		if err := prepareDirect(ctx, &spec, qemu, runDir); err != nil {
			return nil, err
		}
	}
	if spec.SSHPort == 0 {
		if spec.SSHPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	accel := chooseAccel(ctx, qemu, cfg, spec.Machine)
	if d := spec.Machine.Direct; d != nil {
		accel = AccelChoice{Accel: AccelTCG, Reason: d.note}
	}
	spec.Accel = accel.Accel
	args, err := CommandLine(spec)
	if err != nil {
		return nil, err
	}
	vm = &VM{
		info: Info{Machine: spec.machine().Name, QEMU: qemu, Args: args, Format: spec.Format, Attach: spec.Attach, Firmware: spec.Firmware,
			UEFI: spec.UEFI, Accel: accel, SSHPort: spec.SSHPort, VNCSocket: spec.VNCSocket,
			SerialLog: spec.SerialLog, RunDir: runDir, Image: spec.Image},
		log: log, out: newConsoleLog(), stderr: &tailBuffer{max: 64 << 10}, persistent: !spec.Snapshot,
		done: make(chan struct{}), events: make(chan qmp.Event, 64),
		probeCache: cfg.ProbeCache, autoAccel: cfg.Accel == AccelAuto,
	}
	if err := vm.launch(ctx); err != nil {
		return nil, err
	}
	log.WithFields(logrus.Fields{"firmware": spec.Firmware, "format": spec.Format, "attach": spec.Attach,
		"accel": accel.Accel, "ssh_port": spec.SSHPort}).Info("vmrunner: VM running")
	return vm, nil
}

// resolveSpec turns cfg into a machine: the image's format, attachment and firmware detected where
// cfg leaves them open, the window toolkit found, and the default size filled in. The run
// directory's files, the accelerator and the SSH port come later.
func resolveSpec(ctx context.Context, qemu string, cfg Config) (Spec, error) {
	image, err := filepath.Abs(cfg.Image)
	if err != nil {
		return Spec{}, fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	info, err := Inspect(image)
	if err != nil && !(errors.Is(err, ErrUnknownFormat) && cfg.Format != FormatAuto) {
		return Spec{}, err
	}
	mach, err := LookupMachine(cfg.Machine)
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{
		Machine: mach,
		Image:   image, Format: cfg.Format, Attach: cfg.Attach, Snapshot: true,
		Firmware: cfg.Firmware, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB,
		Display: cfg.Display, SSHPort: cfg.SSHPort,
		Paused: true, ExtraArgs: cfg.ExtraArgs,
	}
	if spec.Format == FormatAuto {
		spec.Format = info.Format
	}
	if spec.Attach == AttachAuto {
		spec.Attach = AttachDisk
		if spec.Format == FormatISO {
			spec.Attach = AttachCDROM
		}
	}
	if spec.Firmware == FirmwareAuto {
		spec.Firmware = info.Firmware()
		if !mach.BIOS {
			spec.Firmware = FirmwareUEFI // machines without SeaBIOS boot UEFI only
		}
	}
	if spec.Display == DisplayWindow {
		if runtime.GOOS == "linux" && os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return Spec{}, ErrNoDisplay
		}
		if spec.DisplayBackend, err = windowBackend(ctx, qemu); err != nil {
			return Spec{}, err
		}
	}
	if spec.CPUs == 0 {
		spec.CPUs = min(2, runtime.NumCPU())
	}
	if mach.Direct != nil {
		if err := resolveDirect(&spec); err != nil {
			return Spec{}, err
		}
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 1024
	}
	return spec, nil
}

// placeRunFiles puts the VM's sockets and serial log in its run directory (the log where
// cfg.SerialLog says, when set).
func placeRunFiles(spec *Spec, cfg Config, runDir string) error {
	spec.QMPSocket = filepath.Join(runDir, "qmp.sock")
	spec.SerialSocket = filepath.Join(runDir, "serial.sock")
	spec.SerialLog = filepath.Join(runDir, "serial.log")
	if cfg.SerialLog != "" {
		var err error
		if spec.SerialLog, err = filepath.Abs(cfg.SerialLog); err != nil {
			return fmt.Errorf("serial log %s: %w", cfg.SerialLog, err)
		}
	}
	if spec.Display == DisplayVNC {
		spec.VNCSocket = filepath.Join(runDir, "vnc.sock")
	}
	return nil
}

// prepareDisk makes the persistent copy when cfg.Persist asks for one and finds the firmware's
// files: the UEFI code and a variable store of the run's own (kept beside a persistent copy), or
// the user's ROM.
func prepareDisk(spec *Spec, cfg Config, qemu, runDir string) error {
	varsDir, varsName := runDir, "vars.fd"
	if cfg.Persist != "" {
		var err error
		if spec.Image, err = persistCopy(spec.Image, cfg.Persist); err != nil {
			return err
		}
		spec.Snapshot = false
		varsDir, varsName = filepath.Dir(spec.Image), filepath.Base(spec.Image)+".vars"
	}
	switch spec.Firmware {
	case FirmwareUEFI:
		var err error
		if spec.UEFI, err = FindUEFIFor(nil, qemu, spec.machine()); err != nil {
			return err
		}
		if spec.UEFI.Device != "memory" {
			spec.VarsFile = filepath.Join(varsDir, varsName)
			if _, statErr := os.Stat(spec.VarsFile); cfg.Persist == "" || statErr != nil {
				if err := copyFile(spec.UEFI.Vars, spec.VarsFile); err != nil {
					return fmt.Errorf("copy UEFI variable store %s: %w", spec.UEFI.Vars, err)
				}
			}
		}
	case FirmwareFile:
		var err error
		if spec.BIOSFile, err = filepath.Abs(cfg.FirmwareFile); err != nil || !fileExists(spec.BIOSFile) {
			return fmt.Errorf("firmware file %q: not found or not a regular file", cfg.FirmwareFile)
		}
	}
	return nil
}

// launch starts QEMU with the VM's command line, attaches to it and resumes the paused guest.
// On failure QEMU is gone when it returns.
func (vm *VM) launch(ctx context.Context) error {
	qemu := vm.info.QEMU
	vm.log.WithFields(logrus.Fields{"qemu": qemu, "args": strings.Join(vm.info.Args, " ")}).Debug("vmrunner: starting QEMU")
	vm.cmd = exec.Command(qemu, vm.info.Args...)
	vm.cmd.Stdout, vm.cmd.Stderr = vm.stderr, vm.stderr
	prepareCommand(vm.cmd)
	if err := vm.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", qemu, err)
	}
	vm.release = guardProcess(vm.cmd)
	exited := make(chan struct{})
	go func() {
		err := vm.cmd.Wait()
		close(exited)
		vm.finish(err)
	}()
	if err := vm.connect(ctx, exited); err != nil {
		killProcess(vm.cmd)
		<-vm.done
		return err
	}
	go vm.watch(ctx)
	return nil
}

// connect attaches the QMP and serial sockets of the paused VM and resumes it.
func (vm *VM) connect(ctx context.Context, exited <-chan struct{}) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() { // stop dialling when QEMU dies while starting
		select {
		case <-exited:
			cancel()
		case <-cctx.Done():
		}
	}()
	fail := func(what string, err error) error {
		select { // a dying QEMU closes its sockets just before it exits: its messages say why
		case <-exited:
			return fmt.Errorf("QEMU failed to start: %s", vm.stderr.lastLines(5))
		case <-time.After(time.Second):
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	c, err := qmp.Dial(cctx, filepath.Join(vm.info.RunDir, "qmp.sock"))
	if err != nil {
		return fail("connect to QMP", err)
	}
	vm.qmp = c
	var d net.Dialer
	conn, err := d.DialContext(cctx, "unix", filepath.Join(vm.info.RunDir, "serial.sock"))
	if err != nil {
		return fail("connect to the serial console", err)
	}
	vm.serial = conn
	go func() {
		io.Copy(vm.out, conn)
		vm.out.close()
	}()
	go func() {
		for ev := range c.Events() {
			vm.log.WithField("event", ev.Name).Debug("vmrunner: QMP event")
			if ev.Name == "STOP" {
				go vm.checkCrash()
			}
			select {
			case vm.events <- ev:
			default: // nobody listens: drop
			}
		}
		close(vm.events)
	}()
	if ok, err := vm.probePNG(cctx); err == nil {
		vm.png.Store(ok)
	}
	if err := c.Cont(cctx); err != nil {
		return fail("resume the VM", err)
	}
	return nil
}

// probePNG asks QMP's schema-free way whether screendump takes format=png (QEMU 7.1+): a
// screendump to a file of the paused VM is cheap.
func (vm *VM) probePNG(ctx context.Context) (bool, error) {
	f := filepath.Join(vm.info.RunDir, "probe.png")
	defer os.Remove(f)
	err := vm.qmp.Screendump(ctx, f, "png")
	var qe *qmp.Error
	if errors.As(err, &qe) {
		return false, nil
	}
	return err == nil, err
}

// checkCrash runs after a STOP event: a guest stopped by an accelerator internal error or a
// panic never runs again, so QEMU is stopped with an error that says why and what to do. When the
// hardware accelerator was chosen automatically, its probe verdict is overwritten so the next
// start falls back to TCG.
func (vm *VM) checkCrash() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	st, err := vm.qmp.Status(ctx)
	cancel()
	if err != nil || (st.Status != "internal-error" && st.Status != "guest-panicked") {
		return
	}
	accel := vm.info.Accel.Accel
	why := lastMatching(vm.stderr.String(), "internal error")
	if why == "" {
		why = "state " + st.Status
	}
	crash := fmt.Errorf("%w (%s) under %s", ErrGuestCrashed, why, accel)
	if accel != AccelTCG && st.Status == "internal-error" { // a panic is the guest's own doing
		problem := fmt.Sprintf("a guest stopped with %s", why)
		if vm.autoAccel {
			file, key := probeCacheKey(vm.probeCache, vm.info.QEMU, accel)
			writeProbeCache(file, key, probeVerdict{Works: false, Problem: problem, Checked: time.Now().UTC()})
			crash = fmt.Errorf("%w: %s cannot run this guest; start the preview again and Kiln will use TCG software emulation", crash, strings.ToUpper(string(accel)))
		} else {
			crash = fmt.Errorf("%w: %s cannot run this guest; use --accel tcg", crash, strings.ToUpper(string(accel)))
		}
	}
	vm.crashErr.Store(&crash)
	vm.log.WithError(crash).Warn("vmrunner: guest crashed, stopping QEMU")
	vm.Stop()
}

// watch stops the VM when ctx ends.
func (vm *VM) watch(ctx context.Context) {
	select {
	case <-ctx.Done():
		vm.log.Debug("vmrunner: context ended, stopping the VM")
		vm.Stop()
	case <-vm.done:
	}
}

func (vm *VM) finish(err error) {
	if vm.serial != nil {
		// The socket closes when QEMU exits; the copier then closes the log.
		vm.serial.SetReadDeadline(time.Now().Add(time.Second))
	} else {
		vm.out.close()
	}
	if vm.qmp != nil {
		vm.qmp.Close()
	}
	if vm.release != nil {
		vm.release()
	}
	if err != nil {
		err = fmt.Errorf("QEMU: %w: %s", err, vm.stderr.lastLines(5))
	}
	if crash := vm.crashErr.Load(); crash != nil {
		err = *crash
	}
	vm.exitErr = err
	if err := os.RemoveAll(vm.info.RunDir); err != nil {
		vm.log.WithError(err).Warn("vmrunner: remove run directory")
	}
	vm.log.WithError(err).Debug("vmrunner: QEMU exited")
	close(vm.done)
}

// Info describes the VM.
func (vm *VM) Info() Info { return vm.info }

// QMP returns the VM's QMP client for commands this package has no method for.
func (vm *VM) QMP() *qmp.Client { return vm.qmp }

// Events delivers QMP events (SHUTDOWN, RESET, STOP, RESUME, POWERDOWN, …); events are dropped
// when the channel's buffer is full. It is closed when the VM ends.
func (vm *VM) Events() <-chan qmp.Event { return vm.events }

// Serial returns a reader of the serial console from power-on: it replays what was printed so far
// (up to 4 MiB) and then follows the output until the VM ends (io.EOF). Each call returns an
// independent reader; Close it when done.
func (vm *VM) Serial() io.ReadCloser { return &logReader{l: vm.out, closed: make(chan struct{})} }

// SerialInput is the guest's serial console keyboard.
func (vm *VM) SerialInput() io.Writer { return vm.serial }

// Tail returns the last n lines of the serial console, escape sequences removed.
func (vm *VM) Tail(n int) []string { return vm.out.tail(n) }

// WaitFor waits until text appears on the serial console. It fails with an *ExpectError (holding
// the console's last 40 lines) wrapping ErrExited when the VM ends first, or ctx's error.
func (vm *VM) WaitFor(ctx context.Context, text string) error {
	found, err := vm.out.find(ctx, text)
	if found {
		return nil
	}
	if err == nil {
		err = ErrExited
		select { // the console ends when QEMU exits; let finish record why
		case <-vm.done:
			if vm.exitErr != nil {
				err = fmt.Errorf("%w: %w", ErrExited, vm.exitErr)
			}
		case <-time.After(2 * time.Second):
		}
	}
	return &ExpectError{Text: text, Tail: vm.Tail(40), Err: err}
}

// ExpectError reports text that never appeared on the serial console.
type ExpectError struct {
	Text string
	Tail []string // the console's last lines
	Err  error
}

func (e *ExpectError) Error() string {
	return fmt.Sprintf("%q did not appear on the serial console: %v", e.Text, e.Err)
}

func (e *ExpectError) Unwrap() error { return e.Err }

// Screenshot captures the guest's screen at its current resolution.
func (vm *VM) Screenshot(ctx context.Context) (image.Image, error) {
	format, ext := "ppm", ".ppm"
	if vm.png.Load() {
		format, ext = "png", ".png"
	}
	f := filepath.Join(vm.info.RunDir, fmt.Sprintf("screen-%d%s", vm.shots.Add(1), ext))
	defer os.Remove(f)
	if err := vm.qmp.Screendump(ctx, f, format); err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	img, err := decodeScreendump(data)
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return img, nil
}

// Status returns the VM's run state ("running", "paused", "shutdown", "internal-error", …).
func (vm *VM) Status(ctx context.Context) (string, error) {
	s, err := vm.qmp.Status(ctx)
	return s.Status, err
}

// Powerdown presses the ACPI power button and waits up to timeout for the guest to power off.
// When it does not, QEMU is told to quit and the error wraps ErrPowerdownIgnored.
func (vm *VM) Powerdown(ctx context.Context, timeout time.Duration) error {
	if err := vm.qmp.SystemPowerdown(ctx); err != nil {
		select {
		case <-vm.done:
			return nil
		default:
		}
		vm.Stop()
		return fmt.Errorf("power down: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-vm.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	vm.Stop()
	return fmt.Errorf("%w within %s; QEMU was stopped", ErrPowerdownIgnored, timeout)
}

// persistStopGrace is how long Stop lets a guest with a persistent disk shut down after the
// ACPI power button before QEMU is told to quit.
const persistStopGrace = 15 * time.Second

// Stop ends QEMU (QMP quit, then a kill if it does not exit within 5 s) and waits until the run
// directory is removed. A guest booted from a persistent copy first gets the ACPI power button
// and persistStopGrace to shut down cleanly; a snapshot guest is stopped at once, as nothing it
// wrote is kept. Stop is safe to call more than once and after the VM ended.
func (vm *VM) Stop() error {
	vm.stopOnce.Do(func() {
		select {
		case <-vm.done:
			return
		default:
		}
		if vm.persistent {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := vm.qmp.SystemPowerdown(ctx)
			cancel()
			if err == nil {
				select {
				case <-vm.done:
					return
				case <-time.After(persistStopGrace):
					vm.log.Info("vmrunner: the guest did not power off; stopping QEMU")
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := vm.qmp.Quit(ctx)
		cancel()
		if err != nil {
			vm.log.WithError(err).Debug("vmrunner: QMP quit failed, killing QEMU")
			killProcess(vm.cmd)
		}
		select {
		case <-vm.done:
		case <-time.After(5 * time.Second):
			killProcess(vm.cmd)
		}
	})
	<-vm.done
	return nil
}

// Done is closed when QEMU has exited and the run directory is gone.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit: nil when it exited normally (the guest powered off or Stop was
// called), otherwise QEMU's error with its last messages.
func (vm *VM) Wait() error {
	<-vm.done
	return vm.exitErr
}

// FindQEMU returns the qemu-system-x86_64 binary: name when given, else from PATH or the usual
// install places. The error wraps ErrQEMUNotFound and says how to install QEMU on this host.
func FindQEMU(name string) (string, error) { return FindQEMUFor(name, Machines[DefaultMachine]) }

// FindQEMUFor returns the QEMU binary of machine m (qemu-system-aarch64 for virt) as FindQEMU does.
func FindQEMUFor(name string, m Machine) (string, error) {
	if name != "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrQEMUNotFound, name, err)
		}
		return p, nil
	}
	bin := m.QEMU
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	var places []string
	switch runtime.GOOS {
	case "darwin":
		places = []string{"/opt/homebrew/bin/" + bin, "/usr/local/bin/" + bin, "/opt/local/bin/" + bin}
	case "windows":
		places = []string{`C:\Program Files\qemu\` + bin + ".exe"}
	default:
		places = []string{"/usr/bin/" + bin, "/usr/local/bin/" + bin}
		if m.Arch == hostArch() {
			places = append([]string{"/usr/libexec/qemu-kvm"}, places...)
		}
	}
	for _, p := range places {
		if fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (%s not found): %s", ErrQEMUNotFound, bin, installHintFor("qemu", m.Arch))
}

// windowBackend picks the window toolkit for DisplayWindow among those the QEMU build has
// (`-display help`), in the host's order of preference.
func windowBackend(ctx context.Context, qemu string) (string, error) {
	prefer := []string{"gtk", "sdl"}
	switch runtime.GOOS {
	case "darwin":
		prefer = []string{"cocoa", "sdl", "gtk"}
	case "windows":
		prefer = []string{"sdl", "gtk"}
	}
	out, err := exec.CommandContext(ctx, qemu, "-display", "help").Output()
	if err != nil {
		return "", fmt.Errorf("list QEMU's displays: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, b := range prefer {
		if have[b] {
			return b, nil
		}
	}
	hint := "install QEMU's display support"
	if runtime.GOOS == "linux" && linuxDistro() == "debian" {
		hint = "install it with: sudo apt install qemu-system-gui"
	}
	return "", fmt.Errorf("%w: this QEMU has no window display (%s); %s, or use --headless or --vnc",
		ErrNoWindowDisplay, strings.Join(prefer, ", "), hint)
}

func logger(l *logrus.Logger) *logrus.Logger {
	if l != nil {
		return l
	}
	l = logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for SSH forwarding: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// persistCopy creates the writable copy dst of image on first use and returns its absolute path.
func persistCopy(image, dst string) (string, error) {
	dst, err := filepath.Abs(dst)
	if err != nil {
		return "", fmt.Errorf("persistent copy %s: %w", dst, err)
	}
	if dst == image {
		return "", fmt.Errorf("persistent copy %s: must differ from the image, which a preview never writes", dst)
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := copyFile(image, dst); err != nil {
		return "", fmt.Errorf("persistent copy of %s: %w", image, err)
	}
	return dst, nil
}

// copyFile copies src to dst (via a temporary file), keeping runs of zero blocks as holes.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zero[:n]) {
				off += int64(n)
			} else {
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					return err
				}
				off += int64(n)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		return err
	}
	return out.Commit()
}

// tailBuffer keeps the last max bytes written to it (QEMU's stderr, for error messages).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "; ")
	if s == "" {
		return "no messages"
	}
	return s
}

// runDirPrefix names a VM's run directory in the temporary directory.
const runDirPrefix = "kiln-vm-"

// sweepRunDirs removes the run directories of VMs whose owner process is gone: a process killed
// outright (SIGKILL) cannot remove its own, although its QEMU died with it.
func sweepRunDirs(log *logrus.Logger) {
	removed, err := workdir.Sweep("", runDirPrefix)
	for _, d := range removed {
		log.WithField("dir", d).Debug("vmrunner: removed the run directory of an ended process")
	}
	if err != nil {
		log.WithError(err).Warn("vmrunner: stale run directories")
	}
}
