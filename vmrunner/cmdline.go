package vmrunner

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrInvalidSpec reports a Spec that cannot become a command line (a programming or resolution error).
var ErrInvalidSpec = errors.New("invalid machine spec")

// CommandLine returns the QEMU arguments (without the binary) for a resolved machine. It is a pure
// function: the same Spec always gives the same arguments, and nothing is read from the host.
func CommandLine(s Spec) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if s.Machine.Direct != nil {
		return directCommandLine(s)
	}
	var a []string
	add := func(args ...string) { a = append(a, args...) }

	add("-name", "kiln-preview", "-nodefaults", "-no-user-config")
	mach := s.machine()
	machine := mach.Name
	if s.Display == DisplayNone {
		// As QEMU's own -nographic: the firmware learns that nobody watches the screen, and
		// SeaBIOS (also as a coreboot payload) mirrors its console to the serial port, so its
		// banner and boot messages reach a headless preview's terminal. The screen still works.
		machine += ",graphics=off"
	}
	switch s.Accel {
	case AccelTCG:
		add("-machine", machine, "-accel", mach.TCGAccel, "-cpu", mach.TCGCPU)
	case AccelKVM, AccelHVF:
		add("-machine", machine, "-accel", string(s.Accel), "-cpu", "host")
	case AccelWHPX:
		// WHPX has no "host" CPU model and trips over an in-kernel irqchip on older Windows builds.
		add("-machine", machine, "-accel", "whpx,kernel-irqchip=off", "-cpu", "max")
	}
	add("-smp", strconv.Itoa(s.CPUs), "-m", strconv.Itoa(s.MemoryMiB)+"M", "-rtc", "base=utc")

	switch s.Firmware {
	case FirmwareUEFI:
		fw := s.UEFI
		if fw.Device == "memory" {
			add("-bios", fw.Code)
		} else {
			add("-drive", opts("if=pflash", "unit=0", "format="+fw.CodeFormat, "readonly=on", "file="+esc(fw.Code)))
			add("-drive", opts("if=pflash", "unit=1", "format="+fw.VarsFormat, "file="+esc(s.VarsFile)))
		}
	case FirmwareFile:
		add("-bios", s.BIOSFile)
	case FirmwareBIOS:
		// SeaBIOS is QEMU's default firmware for q35.
	}

	usb := s.Attach == AttachUSB || s.Display != DisplayNone
	if usb {
		add("-device", "qemu-xhci,id=xhci")
	}
	add("-device", mach.Display)
	switch s.Display {
	case DisplayNone:
		add("-display", "none")
	case DisplayVNC:
		add("-display", "none", "-vnc", "unix:"+esc(s.VNCSocket))
	case DisplayWindow:
		add("-display", s.DisplayBackend)
	}
	if s.Display != DisplayNone {
		add("-device", "usb-tablet,bus=xhci.0")
		if mach.Keyboard {
			add("-device", "usb-kbd,bus=xhci.0")
		}
	}

	drive := []string{"if=none", "id=boot0", "file=" + esc(s.Image), "format=" + qemuFormat(s.Format)}
	switch s.Attach {
	case AttachDisk:
		add("-drive", opts(append(drive, "discard=unmap")...))
		add("-device", "virtio-blk-pci,drive=boot0,bootindex=1")
	case AttachUSB:
		add("-drive", opts(drive...))
		add("-device", "usb-storage,bus=xhci.0,drive=boot0,removable=on,bootindex=1")
	case AttachCDROM:
		add("-drive", opts(append(drive, "media=cdrom", "readonly=on")...))
		add("-device", "ide-cd,bus=ide.0,drive=boot0,bootindex=1")
	}
	if s.Snapshot {
		add("-snapshot")
	}

	return append(a, s.plumbing("virtio-net-pci")...), nil
}

// plumbing is the end of every command line: user networking with the SSH forward on a nic of
// the given model, the serial console and QMP sockets, a paused start, and the user's extra
// arguments.
func (s Spec) plumbing(nic string) []string {
	var a []string
	add := func(args ...string) { a = append(a, args...) }
	add("-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:"+strconv.Itoa(s.SSHPort)+"-:22")
	add("-device", nic+",netdev=net0")
	serial := []string{"socket", "id=serial0", "path=" + esc(s.SerialSocket), "server=on", "wait=off"}
	if s.SerialLog != "" {
		serial = append(serial, "logfile="+esc(s.SerialLog), "logappend=off")
	}
	add("-chardev", opts(serial...), "-serial", "chardev:serial0")
	add("-chardev", opts("socket", "id=qmp0", "path="+esc(s.QMPSocket), "server=on", "wait=off"))
	add("-mon", "chardev=qmp0,mode=control")
	if s.Paused {
		add("-S")
	}
	return append(a, s.ExtraArgs...)
}

// machine is the spec's machine, q35 when unset.
func (s Spec) machine() Machine {
	if s.Machine.Name == "" {
		return Machines[DefaultMachine]
	}
	return s.Machine
}

func (s Spec) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...)
	}
	m := s.machine()
	if m.TCGCPU == "" || m.TCGAccel == "" || m.Display == "" {
		return bad("incomplete machine %q", m.Name)
	}
	if s.Firmware == FirmwareBIOS && !m.BIOS {
		return bad("machine %s (%s) has no legacy BIOS: boot it with UEFI", m.Name, m.Arch)
	}
	if s.Attach == AttachCDROM && !m.IDE {
		return bad("machine %s has no IDE bus for a CD-ROM: attach the image as a disk", m.Name)
	}
	for name, p := range map[string]string{"image": s.Image, "QMP socket": s.QMPSocket, "serial socket": s.SerialSocket} {
		if p == "" {
			return bad("no %s path", name)
		}
		if !filepath.IsAbs(p) {
			return bad("%s path %q is not absolute", name, p)
		}
	}
	if (m.Direct != nil) != (s.Firmware == FirmwareKernel) || (s.Firmware == FirmwareKernel) != (s.Attach == AttachSD) {
		return bad("machine %s with firmware %q and attach mode %q", m.Name, s.Firmware, s.Attach)
	}
	switch s.Format {
	case FormatRaw, FormatQCOW2, FormatISO:
	default:
		return bad("unresolved image format %q", s.Format)
	}
	switch s.Attach {
	case AttachDisk, AttachUSB, AttachCDROM, AttachSD:
	default:
		return bad("unresolved attach mode %q", s.Attach)
	}
	switch s.Accel {
	case AccelKVM, AccelHVF, AccelWHPX, AccelTCG:
	default:
		return bad("unresolved accelerator %q", s.Accel)
	}
	switch s.Firmware {
	case FirmwareBIOS:
	case FirmwareUEFI:
		if s.UEFI == nil || s.UEFI.Code == "" {
			return bad("UEFI firmware without a code file")
		}
		if s.UEFI.Device != "memory" && s.VarsFile == "" {
			return bad("UEFI flash firmware without a variable store")
		}
	case FirmwareFile:
		if s.BIOSFile == "" {
			return bad("firmware file not set")
		}
	case FirmwareKernel:
		if s.Kernel == "" || !filepath.IsAbs(s.Kernel) {
			return bad("kernel path %q is not absolute", s.Kernel)
		}
	default:
		return bad("unresolved firmware %q", s.Firmware)
	}
	switch s.Display {
	case DisplayNone:
	case DisplayVNC:
		if s.VNCSocket == "" {
			return bad("VNC display without a socket path")
		}
	case DisplayWindow:
		if s.DisplayBackend == "" {
			return bad("window display without a toolkit")
		}
	default:
		return bad("unknown display %q", s.Display)
	}
	if s.CPUs < 1 || s.MemoryMiB < 16 {
		return bad("%d CPUs and %d MiB of memory", s.CPUs, s.MemoryMiB)
	}
	if s.SSHPort < 1 || s.SSHPort > 65535 {
		return bad("SSH port %d", s.SSHPort)
	}
	return nil
}

// esc escapes a value for QEMU's option syntax, where "," separates options and ",," is a comma.
func esc(v string) string { return strings.ReplaceAll(v, ",", ",,") }

func opts(kv ...string) string { return strings.Join(kv, ",") }

func qemuFormat(f Format) string {
	if f == FormatQCOW2 {
		return "qcow2"
	}
	return "raw" // an ISO 9660 image is a raw file to QEMU
}
