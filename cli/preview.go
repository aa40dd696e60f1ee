package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/vmrunner"
)

func init() {
	register(&Command{Name: "preview", Summary: "boot an image in QEMU (UEFI, BIOS or custom firmware) without modifying it", Run: runPreview})
}

// previewResult is the --json result of kiln preview.
type previewResult struct {
	Image       string  `json:"image"`
	Machine     string  `json:"machine"`
	Format      string  `json:"format"`
	Attach      string  `json:"attach"`
	Firmware    string  `json:"firmware"`
	Accel       string  `json:"accel"`
	AccelReason string  `json:"accel_reason,omitempty"`
	SSHPort     int     `json:"ssh_port"`
	Expect      string  `json:"expect,omitempty"`
	Found       bool    `json:"found"`
	Seconds     float64 `json:"seconds"`
}

func runPreview(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "preview", "[flags] IMAGE   (or --image IMAGE)")
	var cfg vmrunner.Config
	fs.StringVar(&cfg.Image, "image", "", "disk image to boot: raw, qcow2 or ISO 9660 (never modified)")
	format := fs.String("format", "auto", "image format: auto, raw, qcow2 or iso")
	machine := fs.String("machine", "auto", "emulated machine: auto (the board in the manifest.json beside the image, else raspi3b for a Raspberry Pi image, else q35), q35 (a PC), virt (arm64) or raspi3b (Raspberry Pi 3)")
	attach := fs.String("attach", "auto", "connect the image as: auto, disk (virtio), usb (USB stick on xHCI) or cdrom")
	usb := fs.Bool("usb", false, "shorthand for --attach usb: boot it the way a flashed stick boots")
	firmware := fs.String("firmware", "auto", "auto (UEFI for images with an EFI system partition, else BIOS), uefi, bios, or a ROM FILE passed as -bios (e.g. coreboot)")
	accel := fs.String("accel", "auto", "accelerator: auto (KVM/HVF/WHPX when a probe shows it works, else TCG), kvm, hvf, whpx or tcg")
	fs.IntVar(&cfg.CPUs, "cpus", 0, "virtual CPUs (default 2)")
	fs.IntVar(&cfg.MemoryMiB, "memory", 0, "memory in MiB (default 1024)")
	headless := fs.Bool("headless", false, "no display window (the serial console stays on this terminal)")
	vnc := fs.Bool("vnc", false, "serve the display over VNC on a unix socket instead of a window")
	fs.StringVar(&cfg.Persist, "persist", "", "boot a writable copy at `COPY` (created from the image on first use) so changes and UEFI variables persist")
	fs.IntVar(&cfg.SSHPort, "ssh-port", 0, "host port on 127.0.0.1 forwarded to the guest's SSH port (default: a free port)")
	fs.StringVar(&cfg.SerialLog, "serial-log", "", "also write the serial console to `FILE`")
	fs.StringVar(&cfg.QEMU, "qemu", "", "qemu-system binary (default: qemu-system-x86_64, or qemu-system-aarch64 for virt, from PATH)")
	expect := fs.String("expect", "", "exit 0 as soon as `TEXT` appears on the serial console; otherwise fail with its last 40 lines")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long --expect waits")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	if fs.NArg() > 0 { // IMAGE given before further flags: parse the rest too
		if cfg.Image != "" {
			return fmt.Errorf("%w: image given twice (%q and --image %q)", errUsage, fs.Arg(0), cfg.Image)
		}
		cfg.Image = fs.Arg(0)
		if err := common.parse(env, fs, fs.Args()[1:], false); err != nil {
			return err
		}
	}
	if cfg.Image == "" {
		return fmt.Errorf("%w: no image: kiln preview IMAGE (build one with kiln build)", errUsage)
	}
	if cfg.Machine = *machine; cfg.Machine == "auto" {
		cfg.Machine = assembler.PreviewMachine(cfg.Image)
	}
	var err error
	if cfg.Format, err = parseChoice(*format, "format", map[string]vmrunner.Format{"auto": vmrunner.FormatAuto,
		"raw": vmrunner.FormatRaw, "qcow2": vmrunner.FormatQCOW2, "iso": vmrunner.FormatISO}); err != nil {
		return err
	}
	if cfg.Attach, err = parseChoice(*attach, "attach", map[string]vmrunner.Attach{"auto": vmrunner.AttachAuto,
		"disk": vmrunner.AttachDisk, "usb": vmrunner.AttachUSB, "cdrom": vmrunner.AttachCDROM}); err != nil {
		return err
	}
	if *usb {
		cfg.Attach = vmrunner.AttachUSB
	}
	switch *firmware {
	case "auto":
	case "uefi":
		cfg.Firmware = vmrunner.FirmwareUEFI
	case "bios":
		cfg.Firmware = vmrunner.FirmwareBIOS
	default:
		cfg.Firmware, cfg.FirmwareFile = vmrunner.FirmwareFile, *firmware
	}
	if cfg.Accel, err = parseChoice(*accel, "accel", map[string]vmrunner.Accel{"auto": vmrunner.AccelAuto,
		"kvm": vmrunner.AccelKVM, "hvf": vmrunner.AccelHVF, "whpx": vmrunner.AccelWHPX, "tcg": vmrunner.AccelTCG}); err != nil {
		return err
	}
	switch {
	case *headless && *vnc:
		return fmt.Errorf("%w: --headless and --vnc exclude each other", errUsage)
	case *headless:
		cfg.Display = vmrunner.DisplayNone
	case *vnc:
		cfg.Display = vmrunner.DisplayVNC
	}
	cfg.Log = env.Log

	start := time.Now()
	vmCtx, cancelVM := context.WithCancel(ctx)
	defer cancelVM()
	vm, err := vmrunner.Start(vmCtx, cfg)
	if err != nil {
		return fmt.Errorf("preview %s: %w", cfg.Image, err)
	}
	defer vm.Stop()
	info := vm.Info()
	res := previewResult{Image: info.Image, Machine: info.Machine, Format: string(info.Format), Attach: string(info.Attach),
		Firmware: string(info.Firmware), Accel: string(info.Accel.Accel), AccelReason: info.Accel.Reason,
		SSHPort: info.SSHPort, Expect: *expect}
	if info.Accel.Reason != "" && !common.JSON {
		fmt.Fprintf(env.Stderr, "kiln preview: %s\n", info.Accel.Reason)
	}

	if *expect != "" {
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		err := vm.WaitFor(wctx, *expect)
		res.Seconds = time.Since(start).Seconds()
		if err != nil {
			var ee *vmrunner.ExpectError
			if errors.As(err, &ee) {
				if errors.Is(err, context.DeadlineExceeded) {
					err = fmt.Errorf("%q did not appear on the serial console within %s", *expect, *timeout)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w\nlast %d lines of the serial console:\n%s", err, len(ee.Tail), strings.Join(ee.Tail, "\n"))
			}
			return err
		}
		res.Found = true
		vm.Stop()
		if common.JSON {
			return env.printJSON(res)
		}
		fmt.Fprintf(env.Stdout, "found %q after %.1fs (%s, %s, %s)\n", *expect, res.Seconds, info.Firmware, info.Attach, info.Accel.Accel)
		return nil
	}

	if common.JSON {
		if err := env.printJSON(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.Stderr, "kiln preview: %s booting (%s, %s, %s); SSH: ssh -p %d root@127.0.0.1\n",
			cfg.Image, info.Firmware, info.Attach, info.Accel.Accel, info.SSHPort)
		if info.VNCSocket != "" {
			fmt.Fprintf(env.Stderr, "kiln preview: VNC display on unix socket %s\n", info.VNCSocket)
		}
	}
	err = console(ctx, env, vm)
	vm.Stop()
	if err != nil {
		return err
	}
	if werr := vm.Wait(); werr != nil {
		return werr
	}
	return nil
}

// console connects the terminal to the guest's serial console until the VM ends, the user
// presses the escape key (Ctrl-] or Ctrl-A x) or ctx ends. In raw mode Ctrl-C goes to the guest.
func console(ctx context.Context, env *Env, vm *vmrunner.VM) error {
	out := vm.Serial()
	defer out.Close()
	go io.Copy(env.Stdout, out)
	if f, ok := env.Stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// SeaBIOS's serial console turns off the terminal's line wrapping (ESC [?7l).
		defer fmt.Fprint(env.Stdout, "\x1b[?7h")
	}

	quit := make(chan struct{})
	in, isFile := env.Stdin.(*os.File)
	if isFile && term.IsTerminal(int(in.Fd())) {
		state, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("console: raw terminal mode: %w", err)
		}
		defer term.Restore(int(in.Fd()), state)
		fmt.Fprint(env.Stderr, "kiln preview: serial console; press Ctrl-] or Ctrl-A x to quit\r\n")
		go func() {
			copyWithEscape(vm.SerialInput(), env.Stdin)
			close(quit)
		}()
	} else if env.Stdin != nil {
		go io.Copy(vm.SerialInput(), env.Stdin) // piped input; its end does not stop the VM
	}
	select {
	case <-vm.Done():
		return nil
	case <-quit:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// copyWithEscape copies keyboard input to the guest until the escape: Ctrl-] at once, or Ctrl-A
// followed by x (as QEMU's -nographic). Ctrl-A Ctrl-A sends one Ctrl-A. It returns at the
// escape or when src ends.
func copyWithEscape(dst io.Writer, src io.Reader) {
	const ctrlA, ctrlBracket = 0x01, 0x1d
	buf := make([]byte, 256)
	prefix := false
	for {
		n, err := src.Read(buf)
		out := make([]byte, 0, n)
		for _, b := range buf[:n] {
			switch {
			case prefix:
				prefix = false
				switch b {
				case 'x', 'X':
					dst.Write(out)
					return
				case ctrlA:
					out = append(out, ctrlA)
				default:
					out = append(out, ctrlA, b)
				}
			case b == ctrlBracket:
				dst.Write(out)
				return
			case b == ctrlA:
				prefix = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			dst.Write(out)
		}
		if err != nil {
			return
		}
	}
}

func parseChoice[T ~string](v, flagName string, choices map[string]T) (T, error) {
	c, ok := choices[v]
	if !ok {
		names := make([]string, 0, len(choices))
		for k := range choices {
			names = append(names, k)
		}
		sort.Strings(names)
		return c, fmt.Errorf("%w: --%s %q: choose one of %s", errUsage, flagName, v, strings.Join(names, ", "))
	}
	return c, nil
}
