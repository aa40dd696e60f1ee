package vmrunner

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/testenv"

	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/internal/workdir"
)

// mbrMarker is what the test boot sector prints on COM1 (and on the screen).
const mbrMarker = "KILN-MBR-OK"

// mbrImage returns a 1 MiB raw disk whose boot sector switches the VGA to 640x480 (mode 12h),
// then prints mbrMarker on COM1 (port I/O, polling the line status register) and on the screen
// (INT 10h teletype), and halts. Assembled by hand:
//
//	0x00 fa              cli
//	0x01 b8 12 00        mov ax, 0x0012      ; VGA mode 12h: 640x480, 16 colours
//	0x04 cd 10           int 0x10
//	0x06 31 c0           xor ax, ax
//	0x08 8e d8           mov ds, ax
//	0x0a be 2e 7c        mov si, msg         ; msg at 0x7c00 + 0x2e
//	0x0d ac        next: lodsb
//	0x0e 84 c0           test al, al
//	0x10 74 19           jz done             ; -> 0x2b
//	0x12 88 c1           mov cl, al
//	0x14 ba fd 03        mov dx, 0x3fd       ; COM1 line status
//	0x17 ec        wait: in al, dx
//	0x18 a8 20           test al, 0x20       ; transmitter holding register empty?
//	0x1a 74 fb           jz wait
//	0x1c ba f8 03        mov dx, 0x3f8       ; COM1 data
//	0x1f 88 c8           mov al, cl
//	0x21 ee              out dx, al
//	0x22 b4 0e           mov ah, 0x0e        ; teletype output
//	0x24 bb 0f 00        mov bx, 0x000f      ; page 0, white
//	0x27 cd 10           int 0x10
//	0x29 eb e2           jmp next            ; -> 0x0d
//	0x2b f4        done: hlt
//	0x2c eb fd           jmp done
//	0x2e           msg:  "KILN-MBR-OK\r\n", 0
func mbrImage() []byte {
	code := []byte{
		0xfa, 0xb8, 0x12, 0x00, 0xcd, 0x10, 0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x2e, 0x7c,
		0xac, 0x84, 0xc0, 0x74, 0x19, 0x88, 0xc1, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x20, 0x74, 0xfb,
		0xba, 0xf8, 0x03, 0x88, 0xc8, 0xee, 0xb4, 0x0e, 0xbb, 0x0f, 0x00, 0xcd, 0x10, 0xeb, 0xe2,
		0xf4, 0xeb, 0xfd,
	}
	img := make([]byte, 1<<20)
	copy(img, code)
	copy(img[len(code):], mbrMarker+"\r\n\x00")
	img[510], img[511] = 0x55, 0xaa
	return img
}

func writeMBRImage(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, mbrImage(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// needQEMU skips (or fails under CI=true) when QEMU is missing.
func needQEMU(t *testing.T) string {
	t.Helper()
	q, err := FindQEMU("")
	if err != nil {
		testenv.Missing(t, "QEMU not installed: %v", err)
	}
	return q
}

func testLogger(t *testing.T) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(tWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// bootTimeout is generous: the host's cores are shared and the guests run under TCG.
const bootTimeout = 180 * time.Second

func startVM(t *testing.T, cfg Config) *VM {
	t.Helper()
	if cfg.Accel == AccelAuto {
		cfg.Accel = AccelTCG // tests of the probe itself set ProbeCache
	}
	if cfg.Display == DisplayWindow {
		cfg.Display = DisplayNone
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 256
	}
	cfg.Log = testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		vm.Stop()
		if _, err := os.Stat(vm.Info().RunDir); !os.IsNotExist(err) {
			t.Errorf("run directory %s still exists after Stop (stat: %v)", vm.Info().RunDir, err)
		}
	})
	return vm
}

func waitFor(t *testing.T, vm *VM, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := vm.WaitFor(ctx, text); err != nil {
		var ee *ExpectError
		if errors.As(err, &ee) {
			t.Fatalf("%v\nlast console lines:\n%s", err, strings.Join(ee.Tail, "\n"))
		}
		t.Fatal(err)
	}
}

func TestBIOSBootMBR(t *testing.T) {
	needQEMU(t)
	img := writeMBRImage(t, "tiny.img")
	vm := startVM(t, Config{Image: img})
	if got := vm.Info().Firmware; got != FirmwareBIOS {
		t.Errorf("firmware = %q, want bios for an MBR image without an EFI partition", got)
	}
	waitFor(t, vm, mbrMarker)
}

// A headless BIOS preview shows the firmware on the serial console, as QEMU's -nographic does:
// SeaBIOS's banner and boot messages appear before any boot loader or kernel prints, both with
// QEMU's built-in SeaBIOS and with a ROM file of the user's (the coreboot case; SeaBIOS's own
// ROM stands in for one here).
func TestHeadlessBIOSShowsFirmwareOnSerial(t *testing.T) {
	needQEMU(t)
	rom := "/usr/share/seabios/bios-256k.bin"
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"built-in SeaBIOS", Config{Firmware: FirmwareBIOS}},
		{"firmware file", Config{Firmware: FirmwareFile, FirmwareFile: rom}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.FirmwareFile != "" && !fileExists(tt.cfg.FirmwareFile) {
				testenv.Missing(t, "no SeaBIOS ROM at %s (Debian: apt install seabios)", rom)
			}
			cfg := tt.cfg
			cfg.Image, cfg.Display = writeMBRImage(t, "tiny.img"), DisplayNone
			vm := startVM(t, cfg)
			waitFor(t, vm, mbrMarker) // the boot sector runs after the firmware has printed
			tail := vm.Tail(40)
			if !slices.ContainsFunc(tail, func(l string) bool { return strings.HasPrefix(l, "SeaBIOS (version") }) ||
				!slices.ContainsFunc(tail, func(l string) bool { return strings.HasPrefix(l, "Booting from Hard Disk") }) {
				t.Errorf("the serial console lacks SeaBIOS's banner and boot message:\n%s", strings.Join(tail, "\n"))
			}
		})
	}
}

// The probe's verdict must match reality: on a host whose KVM opens but cannot run guests (this
// project's machines) or that has no /dev/kvm at all it picks TCG and says why; where KVM works it
// picks KVM. Reality is what users boot: the default Kiln image under UEFI, forced onto the hardware
// accelerator, reaching its ready line. (A real-mode boot sector is no yardstick: broken nested KVM
// often runs real mode and only fails once the guest enters long mode.)
func TestAccelProbeVerdictMatchesABoot(t *testing.T) {
	qemu := needQEMU(t)
	hw := hostAccel()
	if hw == "" {
		t.Skipf("QEMU has no hardware accelerator on %s", runtime.GOOS)
	}
	cfg := Config{ProbeCache: t.TempDir(), Log: testLogger(t)}
	c := ChooseAccel(context.Background(), qemu, cfg)
	t.Logf("choice: %s (probe took %s)", c, c.Probe.Round(time.Millisecond))

	works := false
	ctx, cancel := context.WithCancel(context.Background())
	img := testimage.Build(t, "").Image
	vm, err := Start(ctx, Config{Image: img, Accel: hw, Display: DisplayNone, MemoryMiB: 1024, Log: testLogger(t)})
	if err == nil {
		// A working accelerator boots it in seconds; TCG needs about 20 s.
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		works = vm.WaitFor(wctx, testimage.DefaultReadyLine) == nil
		wcancel()
		vm.Stop()
	} else {
		t.Logf("forced %s boot: %v", hw, err)
	}
	cancel()

	if works {
		if c.Accel != hw {
			t.Fatalf("probe chose %s (%s) but a %s boot works", c.Accel, c.Reason, hw)
		}
	} else {
		if c.Accel != AccelTCG {
			t.Fatalf("probe chose %s but a %s boot fails", c.Accel, hw)
		}
		if !strings.Contains(c.Reason, strings.ToUpper(string(hw))) || !strings.Contains(c.Reason, "TCG") {
			t.Errorf("reason %q does not name %s and the TCG fallback", c.Reason, strings.ToUpper(string(hw)))
		}
	}
	// A probe's verdict is cached; a missing device is checked again each time (it costs an open).
	again := ChooseAccel(context.Background(), qemu, cfg)
	if again.Cached != (accelPresent() == nil) || again.Accel != c.Accel || again.Reason != c.Reason {
		t.Errorf("second choice = %+v, want the same verdict %+v", again, c)
	}
}

// A guest that stops for good (here a boot sector reporting a panic to QEMU's pvpanic device, as
// a kernel does; an accelerator internal error takes the same path) ends the VM at once with
// ErrGuestCrashed instead of leaving a frozen screen and a wait that runs into its timeout.
func TestGuestCrashEndsTheVM(t *testing.T) {
	needQEMU(t)
	img := make([]byte, 1<<20)
	copy(img, []byte{0xb0, 0x01, 0xba, 0x05, 0x05, 0xee, 0xf4, 0xeb, 0xfd}) // out 0x505, 1; hlt
	img[510], img[511] = 0x55, 0xaa
	p := filepath.Join(t.TempDir(), "panic.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, Config{Image: p, Firmware: FirmwareBIOS, ExtraArgs: []string{"-device", "pvpanic", "-action", "panic=pause"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	err := vm.WaitFor(ctx, "never printed")
	if !errors.Is(err, ErrGuestCrashed) {
		t.Fatalf("WaitFor = %v, want ErrGuestCrashed", err)
	}
	if !strings.Contains(err.Error(), "guest-panicked") {
		t.Errorf("error %q does not name the guest state", err)
	}
	select {
	case <-vm.Done():
	default:
		t.Fatal("QEMU still runs after the guest crashed")
	}
	if werr := vm.Wait(); !errors.Is(werr, ErrGuestCrashed) {
		t.Errorf("Wait = %v, want ErrGuestCrashed", werr)
	}
	t.Logf("crash reported after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// The probe ROM itself must reach its success exit: under TCG it always can.
func TestProbeROMPassesUnderTCG(t *testing.T) {
	qemu := needQEMU(t)
	if err := ProbeAccel(context.Background(), qemu, AccelTCG, 60*time.Second); err != nil {
		t.Fatalf("probe under TCG: %v", err)
	}
}

func TestUSBStickBoot(t *testing.T) {
	needQEMU(t)
	vm := startVM(t, Config{Image: writeMBRImage(t, "stick.img"), Attach: AttachUSB})
	if !hasSeq(vm.Info().Args, "-device", "usb-storage,bus=xhci.0,drive=boot0,removable=on,bootindex=1") {
		t.Fatalf("image not attached as a USB stick: %q", vm.Info().Args)
	}
	waitFor(t, vm, mbrMarker)
}

func TestISOBootsAsCDROM(t *testing.T) {
	needQEMU(t)
	vm := startVM(t, Config{Image: isoImage(t, false)})
	if i := vm.Info(); i.Format != FormatISO || i.Attach != AttachCDROM || i.Firmware != FirmwareBIOS {
		t.Fatalf("ISO resolved to format %s, attach %s, firmware %s; want iso, cdrom, bios", i.Format, i.Attach, i.Firmware)
	}
	waitFor(t, vm, mbrMarker)
}

func TestPathWithCommaAndSpaceBoots(t *testing.T) {
	needQEMU(t)
	img := writeMBRImage(t, "my disk, v2.img")
	vm := startVM(t, Config{Image: img, SerialLog: filepath.Join(filepath.Dir(img), "serial, log.txt")})
	waitFor(t, vm, mbrMarker)
	vm.Stop()
	log, err := os.ReadFile(filepath.Join(filepath.Dir(img), "serial, log.txt"))
	if err != nil || !bytes.Contains(log, []byte(mbrMarker)) {
		t.Errorf("serial log file: %q, %v; want the marker", log, err)
	}
}

func TestPreviewLeavesImageUnchanged(t *testing.T) {
	needQEMU(t)
	img := writeMBRImage(t, "tiny.img")
	before := testimage.SHA256(t, img)
	st, _ := os.Stat(img)
	vm := startVM(t, Config{Image: img})
	waitFor(t, vm, mbrMarker)
	// A guest write must land in the snapshot, not in the file: write over the boot sector
	// through QEMU's monitor, the way a guest's disk driver would.
	var out string
	if err := vm.QMP().Execute(context.Background(), "human-monitor-command",
		map[string]any{"command-line": "qemu-io boot0 \"write -P 0x55 0 1M\""}, &out); err != nil {
		t.Fatalf("write to the disk: %v", err)
	}
	vm.Stop()
	if after := testimage.SHA256(t, img); after != before {
		t.Fatalf("image sha256 changed from %s to %s", before, after)
	}
	if st2, _ := os.Stat(img); !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("image modification time changed")
	}
}

func TestPersistWritesToTheCopy(t *testing.T) {
	needQEMU(t)
	img := writeMBRImage(t, "tiny.img")
	before := testimage.SHA256(t, img)
	cp := filepath.Join(t.TempDir(), "work.img")
	vm := startVM(t, Config{Image: img, Persist: cp})
	if hasSeq(vm.Info().Args, "-snapshot") || vm.Info().Image != cp {
		t.Fatalf("persist: booted %s with %q; want the copy without -snapshot", vm.Info().Image, vm.Info().Args)
	}
	waitFor(t, vm, mbrMarker)
	if err := vm.QMP().Execute(context.Background(), "human-monitor-command",
		map[string]any{"command-line": "qemu-io boot0 \"write -P 0x55 4096 4096\""}, nil); err != nil {
		t.Fatalf("write to the disk: %v", err)
	}
	vm.Stop()
	if testimage.SHA256(t, img) != before {
		t.Fatal("the original image changed")
	}
	data, err := os.ReadFile(cp)
	if err != nil || len(data) < 8192 || data[4096] != 0x55 || !bytes.Equal(data[:512], mbrImage()[:512]) {
		t.Fatalf("the copy does not hold the guest's write (err %v)", err)
	}
}

func TestScreenshotHasGuestResolution(t *testing.T) {
	needQEMU(t)
	vm := startVM(t, Config{Image: writeMBRImage(t, "tiny.img")})
	waitFor(t, vm, mbrMarker)
	// The boot sector switched the VGA to mode 12h: 640x480, white text on black.
	var img image.Image
	var err error
	for range 50 { // the display refreshes asynchronously after the mode switch
		if img, err = vm.Screenshot(context.Background()); err == nil && img.Bounds().Dx() == 640 && lit(img) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 480 {
		t.Fatalf("screenshot is %dx%d, want the guest's 640x480", b.Dx(), b.Dy())
	}
	if n := lit(img); n < 50 {
		t.Fatalf("screenshot is blank (%d lit pixels), want the marker text", n)
	}
}

// lit counts pixels that are not black.
func lit(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r|g|bl > 0x1000 {
				n++
			}
		}
	}
	return n
}

func TestCancelStopsQEMU(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := Start(ctx, Config{Image: writeMBRImage(t, "tiny.img"), Accel: AccelTCG, Display: DisplayNone, MemoryMiB: 128, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	waitFor(t, vm, mbrMarker)
	cancel()
	select {
	case <-vm.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU still running 30s after the context was cancelled")
	}
	if err := vm.Wait(); err != nil {
		t.Errorf("Wait after cancel = %v, want a clean exit", err)
	}
	if vm.cmd.ProcessState == nil || !vm.cmd.ProcessState.Exited() {
		t.Errorf("QEMU did not exit by itself: %v", vm.cmd.ProcessState)
	}
	if _, err := os.Stat(vm.Info().RunDir); !os.IsNotExist(err) {
		t.Errorf("run directory not removed: %v", err)
	}
}

// kilnBin returns the kiln binary ($KILN_BIN, set by make); without it the test is skipped (CI fails).
func kilnBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("KILN_BIN")
	if p == "" {
		testenv.Missing(t, "KILN_BIN not set: run through make test, or set it to a built kiln binary")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("KILN_BIN: %v", err)
	}
	return p
}

func TestPreviewCommandExpect(t *testing.T) {
	needQEMU(t)
	kiln := kilnBin(t)
	img := writeMBRImage(t, "tiny.img")
	out, err := exec.Command(kiln, "preview", "--headless", "--accel", "tcg", "--expect", mbrMarker, "--timeout", "3m", img).CombinedOutput()
	if err != nil {
		t.Fatalf("kiln preview --expect: %v\n%s", err, out)
	}
	cmd := exec.Command(kiln, "preview", "--headless", "--accel", "tcg", "--expect", "never printed", "--timeout", "5s", img)
	out, err = cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("kiln preview --expect of a missing text exited 0:\n%s", out)
	}
	// Headless, the firmware's messages come first: SeaBIOS's banner, then the boot sector's line.
	for _, want := range []string{"lines of the serial console:", "SeaBIOS (version", mbrMarker} {
		if !strings.Contains(string(out), want) {
			t.Errorf("failure output does not show the console's last lines (%q missing):\n%s", want, out)
		}
	}
}

// Killing kiln with SIGKILL must not leave QEMU behind.
func TestQEMUDiesWithKiln(t *testing.T) {
	needQEMU(t)
	kiln := kilnBin(t)
	cmd := exec.Command(kiln, "preview", "--headless", "--accel", "tcg", writeMBRImage(t, "tiny.img"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen []byte
	deadline := time.Now().Add(bootTimeout)
	for !bytes.Contains(seen, []byte(mbrMarker)) && time.Now().Before(deadline) {
		n, err := stdout.Read(buf)
		seen = append(seen, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !bytes.Contains(seen, []byte(mbrMarker)) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("kiln preview printed %q, not the marker", seen)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if left := leftoverQEMU(os.Getenv(testMarkEnv), 10*time.Second); len(left) > 0 {
		t.Fatalf("QEMU outlived a killed kiln: %s", strings.Join(left, "; "))
	}
	// A killed kiln cannot remove its run directory; the next start removes it.
	owned := func() []string {
		var mine []string
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runDirPrefix+"*"))
		for _, d := range dirs {
			if pid, _ := workdir.Owner(d, runDirPrefix); pid == cmd.Process.Pid {
				mine = append(mine, d)
			}
		}
		return mine
	}
	if len(owned()) != 1 {
		t.Fatalf("run directories of the killed kiln: %q, want 1", owned())
	}
	sweepRunDirs(testLogger(t))
	if left := owned(); len(left) > 0 {
		t.Fatalf("stale run directory %q not removed", left)
	}
}

// The app shows the screen through VNC on the run directory's unix socket.
func TestVNCDisplayOnUnixSocket(t *testing.T) {
	needQEMU(t)
	vm := startVM(t, Config{Image: writeMBRImage(t, "tiny.img"), Display: DisplayVNC})
	sock := vm.Info().VNCSocket
	if filepath.Dir(sock) != vm.Info().RunDir {
		t.Errorf("VNC socket %s is not in the run directory %s", sock, vm.Info().RunDir)
	}
	conn, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	greeting := make([]byte, 12)
	if _, err := io.ReadFull(conn, greeting); err != nil || !bytes.HasPrefix(greeting, []byte("RFB 003.")) {
		t.Fatalf("VNC greeting %q, %v; want an RFB protocol version", greeting, err)
	}
}

func TestWindowNeedsAGraphicalSession(t *testing.T) {
	needQEMU(t)
	if runtime.GOOS != "linux" {
		t.Skip("the check is for X11/Wayland sessions")
	}
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	vm, err := Start(context.Background(), Config{Image: writeMBRImage(t, "tiny.img"), Display: DisplayWindow})
	if err == nil {
		vm.Stop()
	}
	if !errors.Is(err, ErrNoDisplay) || !strings.Contains(err.Error(), "--headless") {
		t.Fatalf("err = %v, want ErrNoDisplay suggesting --headless", err)
	}
}
