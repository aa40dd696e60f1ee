package vmrunner

import (
	"time"

	"github.com/sirupsen/logrus"
)

// Format is a disk image format.
type Format string

const (
	FormatAuto  Format = ""      // detect from the file's contents
	FormatRaw   Format = "raw"   // a plain disk image (MBR and/or GPT)
	FormatQCOW2 Format = "qcow2" // QEMU copy-on-write v2/v3
	FormatISO   Format = "iso"   // ISO 9660 (optical media, possibly hybrid)
)

// Attach says how the image is connected to the VM.
type Attach string

const (
	AttachAuto  Attach = ""      // CD-ROM for ISO 9660, virtio disk otherwise
	AttachDisk  Attach = "disk"  // virtio-blk disk
	AttachUSB   Attach = "usb"   // USB stick: usb-storage on a qemu-xhci controller
	AttachCDROM Attach = "cdrom" // SATA CD-ROM
)

// FirmwareKind selects the firmware the VM boots with.
type FirmwareKind string

const (
	FirmwareAuto FirmwareKind = ""     // UEFI when the image has an EFI system partition or EFI boot catalog entry, else BIOS
	FirmwareUEFI FirmwareKind = "uefi" // OVMF / edk2, found through QEMU's firmware descriptors
	FirmwareBIOS FirmwareKind = "bios" // SeaBIOS, QEMU's built-in default
	FirmwareFile FirmwareKind = "file" // a ROM of the user's (Config.FirmwareFile), passed as -bios
)

// Accel is a QEMU accelerator.
type Accel string

const (
	AccelAuto Accel = ""     // the host's hardware accelerator when the probe proves it works, else TCG
	AccelKVM  Accel = "kvm"  // Linux
	AccelHVF  Accel = "hvf"  // macOS
	AccelWHPX Accel = "whpx" // Windows Hypervisor Platform
	AccelTCG  Accel = "tcg"  // software emulation (multi-threaded)
)

// Display says where the guest's screen goes.
type Display string

const (
	DisplayWindow Display = ""         // a window (GTK or SDL on Linux and Windows, Cocoa on macOS)
	DisplayVNC    Display = "vnc"      // a VNC server on a unix socket (VM.Info().VNCSocket)
	DisplayNone   Display = "headless" // no display; screenshots still work
)

// Config describes a preview. Only Image is required.
type Config struct {
	Image  string // path of the disk image; never written unless Persist is set
	Format Format // FormatAuto detects raw, qcow2 and ISO 9660
	// Machine names the emulated computer in Machines: "" (q35, a PC, or raspi3b for a
	// Raspberry Pi image: IsPiImage), "virt" (generic arm64), "raspi3b".
	Machine string
	Attach  Attach

	Firmware     FirmwareKind
	FirmwareFile string // ROM for FirmwareFile (e.g. a coreboot build)

	Accel     Accel
	CPUs      int // default 2
	MemoryMiB int // default 1024

	Display Display

	// Persist, when set, is the path of a writable copy of the image: created from Image when it
	// does not exist, then booted without -snapshot so changes (and UEFI variables, kept in
	// Persist+".vars") survive. Image itself is still never written.
	Persist string

	SSHPort   int    // host port forwarded to guest port 22 on 127.0.0.1; 0 picks a free one
	SerialLog string // also write the serial console to this file (default: only in the run directory)

	QEMU      string   // qemu-system binary of the machine's arch; "" finds it on PATH and in the usual install places
	ExtraArgs []string // appended to the command line as they are

	// ProbeCache is the directory for the accelerator probe's cached verdicts; "" means
	// os.UserCacheDir()/kiln. ProbeTimeout bounds one probe start (default 3s).
	ProbeCache   string
	ProbeTimeout time.Duration

	Log *logrus.Logger // nil: logs are discarded
}

// Spec is a fully resolved machine: everything CommandLine needs and nothing it has to discover.
// Start derives it from a Config.
type Spec struct {
	Machine  Machine // zero: q35
	Image    string  // absolute path of the file to attach
	Format   Format  // never FormatAuto
	Attach   Attach  // never AttachAuto
	Snapshot bool    // discard writes (-snapshot)

	Firmware FirmwareKind // never FirmwareAuto
	UEFI     *UEFIFirmware
	VarsFile string // the run's copy of the UEFI variable store (flash mapping)
	BIOSFile string // -bios ROM for FirmwareFile
	// Kernel, Initrd, DTB and Append: what QEMU loads for FirmwareKernel.
	Kernel, Initrd, DTB, Append string

	Accel     Accel // never AccelAuto
	CPUs      int
	MemoryMiB int

	Display        Display
	DisplayBackend string // window toolkit: gtk, cocoa or sdl
	VNCSocket      string

	QMPSocket    string
	SerialSocket string
	SerialLog    string
	SSHPort      int

	Paused    bool // start with the CPUs stopped (-S) until QMP "cont"
	ExtraArgs []string
}
