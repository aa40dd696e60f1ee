package vmrunner

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/vmrunner/qmp"
)

//go:embed proberom/probe.bin
var probeCode []byte

// probeROM returns the 64 KiB probe BIOS: the code at offset 0 and a near jump to it at the reset vector.
func probeROM() []byte {
	rom := bytes.Repeat([]byte{0xff}, 64<<10)
	copy(rom, probeCode)
	copy(rom[0xfff0:], []byte{0xe9, 0x0d, 0x00}) // jmp rel16: 0xfff3 + 0x000d wraps to 0x0000
	return rom
}

const probeExitOK = 0x2a<<1 | 1 // isa-debug-exit turns the guest's 0x2a into this exit status

// AccelChoice is the accelerator a VM runs with and why.
type AccelChoice struct {
	Accel Accel
	// Reason explains a fallback to TCG (empty when the hardware accelerator is used or TCG was
	// asked for). A UI shows it next to the preview.
	Reason string
	Cached bool          // the verdict came from the probe cache
	Probe  time.Duration // time spent probing (0 when cached)
}

func (a AccelChoice) String() string {
	if a.Reason != "" {
		return fmt.Sprintf("%s (%s)", a.Accel, a.Reason)
	}
	return string(a.Accel)
}

// ChooseAccel decides the accelerator for cfg: the one cfg names, otherwise the host's hardware
// accelerator (KVM, HVF, WHPX) when a probe VM proves it runs a 64-bit guest, otherwise TCG.
// Probe verdicts are cached per accelerator, QEMU binary and host boot.
func ChooseAccel(ctx context.Context, qemuBinary string, cfg Config) AccelChoice {
	return chooseAccel(ctx, qemuBinary, cfg, Machines[DefaultMachine])
}

// chooseAccel is ChooseAccel for machine m: hardware acceleration only runs a guest of the host's
// own architecture; the probe VM is an x86_64 one, so other guests (arm64 on an arm64 host) take
// the accelerator when it is present.
func chooseAccel(ctx context.Context, qemuBinary string, cfg Config, m Machine) AccelChoice {
	log := logger(cfg.Log)
	if cfg.Accel != AccelAuto {
		return AccelChoice{Accel: cfg.Accel}
	}
	if m.Arch != "" && m.Arch != hostArch() {
		return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("the guest is %s, the host %s: using TCG software emulation (slower)", m.Arch, hostArch())}
	}
	hw := hostAccel()
	if hw == "" {
		return AccelChoice{Accel: AccelTCG, Reason: "no hardware accelerator is supported on this OS; using TCG software emulation (slower)"}
	}
	name := strings.ToUpper(string(hw))
	if err := accelPresent(); err != nil {
		c := AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("%s is not available (%v); using TCG software emulation (slower)", name, err)}
		log.WithField("reason", c.Reason).Info("vmrunner: accelerator")
		return c
	}
	if m.Arch != "x86_64" {
		return AccelChoice{Accel: hw}
	}
	cacheFile, key := probeCacheKey(cfg.ProbeCache, qemuBinary, hw)
	if v, ok := readProbeCache(cacheFile, key); ok {
		c := verdict(hw, v.Works, v.Problem)
		c.Cached = true
		log.WithFields(logrus.Fields{"accel": c.Accel, "reason": c.Reason, "cache": cacheFile}).Info("vmrunner: accelerator (cached probe)")
		return c
	}
	timeout := cfg.ProbeTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	start := time.Now()
	problem := ProbeAccel(ctx, qemuBinary, hw, timeout)
	if ctx.Err() != nil { // interrupted: decide nothing lasting
		return AccelChoice{Accel: AccelTCG, Reason: "accelerator probe interrupted"}
	}
	c := verdict(hw, problem == nil, errString(problem))
	c.Probe = time.Since(start)
	writeProbeCache(cacheFile, key, probeVerdict{Works: problem == nil, Problem: errString(problem), Checked: time.Now().UTC()})
	// Info, not a warning: the fallback is expected on many hosts and Reason carries it to the UI.
	log.WithFields(logrus.Fields{"accel": c.Accel, "reason": c.Reason, "probe": c.Probe.Round(time.Millisecond)}).Info("vmrunner: accelerator")
	return c
}

func verdict(hw Accel, works bool, problem string) AccelChoice {
	if works {
		return AccelChoice{Accel: hw}
	}
	return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("%s is present but cannot run guests (%s); using TCG software emulation (slower)", strings.ToUpper(string(hw)), problem)}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ProbeAccel starts a tiny VM under accel: a 64 KiB ROM that switches to 64-bit long mode, pages,
// runs SSE code and writes a code to QEMU's isa-debug-exit port. It returns nil when QEMU exits
// with that code, and otherwise what went wrong: QEMU failing to start, the vCPU stopping with
// internal-error, an early exit, or no progress before timeout. A working accelerator finishes in
// well under 100 ms.
func ProbeAccel(ctx context.Context, qemuBinary string, accel Accel, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "kiln-probe-")
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer os.RemoveAll(dir)
	rom := filepath.Join(dir, "probe.rom")
	if err := os.WriteFile(rom, probeROM(), 0o644); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	sock := filepath.Join(dir, "qmp.sock")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.Command(qemuBinary, probeArgs(accel, rom, sock)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	prepareCommand(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start QEMU: %w", err)
	}
	release := guardProcess(cmd)
	defer release()
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			killProcess(cmd)
			<-exited
		}
	}()
	exitProblem := func() error {
		err := waitErr
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == probeExitOK {
			return nil
		}
		msg := problemLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("QEMU exited during the probe: %s", msg)
	}

	// QEMU starts paused (-S): connect to QMP first so that no stop event can be missed.
	var client *qmp.Client
	dialed := make(chan error, 1)
	go func() {
		var err error
		client, err = qmp.Dial(ctx, sock)
		dialed <- err
	}()
	select {
	case <-exited:
		<-dialed
		return exitProblem()
	case err := <-dialed:
		if err != nil {
			select { // QEMU dying while we connect closes the socket: its exit says why
			case <-exited:
				return exitProblem()
			case <-time.After(500 * time.Millisecond):
			}
			return fmt.Errorf("no QMP connection: %w", err)
		}
	}
	defer client.Close()
	if err := client.Cont(ctx); err != nil {
		select {
		case <-exited:
			return exitProblem()
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("resume: %w", err)
		}
	}
	for {
		select {
		case <-exited:
			return exitProblem()
		case ev, ok := <-client.Events():
			if !ok || ev.Name != "STOP" {
				continue
			}
			st, err := client.Status(ctx)
			if err != nil {
				continue // QEMU is exiting: the exit status decides
			}
			msg := lastMatching(stderr.String(), "internal error")
			if msg == "" {
				msg = "the guest CPU stopped"
			}
			return fmt.Errorf("%s, VM state %s", msg, st.Status)
		case <-ctx.Done():
			if st, err := client.Status(context.Background()); err == nil {
				return fmt.Errorf("no progress within %s, VM state %s", timeout, st.Status)
			}
			return fmt.Errorf("no progress within %s", timeout)
		}
	}
}

// probeArgs is the probe VM's command line: the CPU model the accelerator would run previews with.
func probeArgs(accel Accel, rom, qmpSocket string) []string {
	cpu := "host"
	accelOpt := string(accel)
	switch accel {
	case AccelTCG:
		cpu, accelOpt = "max", "tcg,thread=multi"
	case AccelWHPX:
		cpu, accelOpt = "max", "whpx,kernel-irqchip=off"
	}
	return []string{
		"-machine", "q35", "-accel", accelOpt, "-cpu", cpu, "-m", "32M",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-bios", rom, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01",
		"-chardev", "socket,id=qmp0,path=" + esc(qmpSocket) + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control", "-S",
	}
}

// qemuPrefix is the program name QEMU puts before its messages.
var qemuPrefix = regexp.MustCompile(`^qemu-system-[a-z0-9_]+(\.exe)?: `)

// problemLine picks the line of QEMU's messages that says what went wrong: the first error, else
// the last line that is not a warning.
func problemLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			return strings.TrimSpace(qemuPrefix.ReplaceAllString(l, ""))
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.Contains(l, "warning:") {
			return qemuPrefix.ReplaceAllString(l, "")
		}
	}
	return ""
}

func lastMatching(s, substr string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

type probeVerdict struct {
	Works   bool      `json:"works"`
	Problem string    `json:"problem,omitempty"`
	Checked time.Time `json:"checked"`
}

// probeCacheKey names the cache file and the entry for a verdict: it holds while the host has not
// rebooted (kernel, modules and hypervisor state stay) and the QEMU binary is the same file.
func probeCacheKey(dir, qemuBinary string, accel Accel) (string, string) {
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", ""
		}
		dir = filepath.Join(base, "kiln")
	}
	st, err := os.Stat(qemuBinary)
	if err != nil {
		return "", ""
	}
	key := fmt.Sprintf("%s|%s|%d|%d|%s", accel, qemuBinary, st.Size(), st.ModTime().UnixNano(), hostBootID())
	return filepath.Join(dir, "accel-probe.json"), key
}

func readProbeCache(file, key string) (probeVerdict, bool) {
	if file == "" {
		return probeVerdict{}, false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return probeVerdict{}, false
	}
	var m map[string]probeVerdict
	if json.Unmarshal(data, &m) != nil {
		return probeVerdict{}, false
	}
	v, ok := m[key]
	return v, ok
}

func writeProbeCache(file, key string, v probeVerdict) {
	if file == "" {
		return
	}
	m := map[string]probeVerdict{}
	if data, err := os.ReadFile(file); err == nil {
		json.Unmarshal(data, &m)
	}
	// Entries of earlier boots are stale: keep only this boot's.
	for k := range m {
		if !strings.HasSuffix(k, "|"+hostBootID()) {
			delete(m, k)
		}
	}
	m[key] = v
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil || os.MkdirAll(filepath.Dir(file), 0o755) != nil {
		return
	}
	atomicfile.Write(file, data, 0o644) // a cache: a failed write only costs a probe next time
}
