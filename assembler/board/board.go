// Package board reads board files: the board support data that keeps the hardware apart from the
// product recipe. A board names the architecture, the firmware kind, the kernel package and its
// console, the device trees, the boot loader or firmware files, the partition layout defaults and the
// modules the hardware needs; one recipe builds for several boards.
//
// The built-in boards (pc, arm64-uefi, rpi) are embedded; a user's own board file is read by path.
// Errors name the file, line and field.
package board

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kilnproject/kiln/assembler/internal/tomllines"
	"github.com/kilnproject/kiln/internal/units"
)

// Firmware kinds.
const (
	FirmwareUEFI   = "uefi"   // systemd-boot on the ESP
	FirmwareBIOS   = "bios"   // GRUB from the MBR (x86_64 only)
	FirmwareHybrid = "hybrid" // UEFI and legacy BIOS on one disk (x86_64 only)
	FirmwareRPi    = "rpi"    // the Raspberry Pi's own firmware from the FAT boot partition
)

// Architectures (kernel names, as uname -m and the recipe's arch say).
const (
	ArchX86_64  = "x86_64"
	ArchAArch64 = "aarch64"
)

// Default is the board a recipe builds for when it names none.
const Default = "pc"

// MaxFileSize bounds a board file.
const MaxFileSize = 64 << 10

// ErrInvalid: a board file has syntax or validation errors (the error is an *Error).
var ErrInvalid = errors.New("invalid board file")

// ErrUnknown: no built-in board has the name given.
var ErrUnknown = errors.New("unknown board")

// Board is one board file.
type Board struct {
	Name        string  `toml:"name" json:"name,omitempty"`
	Description string  `toml:"description" json:"description,omitempty"`
	Arch        string  `toml:"arch" json:"arch,omitempty"`         // ArchX86_64 or ArchAArch64
	Firmware    string  `toml:"firmware" json:"firmware,omitempty"` // a Firmware… kind
	Kernel      Kernel  `toml:"kernel" json:"kernel,omitempty"`
	Boot        Boot    `toml:"boot" json:"boot,omitempty"`
	Layout      Layout  `toml:"layout" json:"layout,omitempty"`
	Preview     Preview `toml:"preview" json:"preview,omitempty"`
	WiFi        WiFi    `toml:"wifi" json:"wifi,omitempty"`

	// File is where the board was read from: "boards/<name>.toml (built-in)" or a path.
	File  string         `toml:"-" json:"file"`
	lines map[string]int // field path → line
}

// Kernel is the kernel the board boots and how.
type Kernel struct {
	Package     string   `toml:"package" json:"package,omitempty"`           // linux-image package for Arch
	Console     string   `toml:"console" json:"console,omitempty"`           // serial console device, without /dev/ ("ttyS0", "ttyAMA0")
	Cmdline     string   `toml:"cmdline" json:"cmdline,omitempty"`           // default kernel command line
	Modules     []string `toml:"modules" json:"modules,omitempty"`           // loaded at boot, with their dependencies
	DeviceTrees []string `toml:"device_trees" json:"device_trees,omitempty"` // device tree names without .dtb (firmware rpi)
}

// Boot names the boot loader or firmware files.
type Boot struct {
	Bootloader        string `toml:"bootloader" json:"bootloader,omitempty"`                 // systemd-boot-efi package (firmware uefi, hybrid)
	GRUB              string `toml:"grub" json:"grub,omitempty"`                             // grub-pc-bin package (firmware bios, hybrid; ISO output)
	FirmwarePackage   string `toml:"firmware_package" json:"firmware_package,omitempty"`     // the firmware files' package (firmware rpi)
	FirmwareComponent string `toml:"firmware_component" json:"firmware_component,omitempty"` // the archive component that holds it
	BootTries         int    `toml:"boot_tries" json:"boot_tries,omitempty"`                 // tries a new version gets before the old one returns
}

// Layout is the partition layout default.
type Layout struct {
	DiskSize units.Size `toml:"disk_size" json:"disk_size,omitempty"`
	ESPSize  units.Size `toml:"esp_size" json:"esp_size,omitempty"`   // the boot partition (FAT32)
	DataSize units.Size `toml:"data_size" json:"data_size,omitempty"` // 0: the rest of the disk
}

// WiFi is what wireless networking needs on the board: firmware packages and driver modules,
// added to a package image whose recipe configures Wi-Fi.
type WiFi struct {
	Packages  []string `toml:"packages" json:"packages,omitempty"`   // firmware packages
	Modules   []string `toml:"modules" json:"modules,omitempty"`     // driver modules, loaded at boot
	Component string   `toml:"component" json:"component,omitempty"` // the archive component holding the firmware
}

// Preview is how QEMU emulates the board.
type Preview struct {
	Machine string `toml:"machine" json:"machine,omitempty"` // QEMU machine: q35, virt, raspi3b
}

// DebianArch is the Debian architecture of the board's packages.
func (b *Board) DebianArch() string { return DebianArch(b.Arch) }

// DebianArch maps a kernel architecture name to Debian's.
func DebianArch(arch string) string {
	switch arch {
	case ArchX86_64:
		return "amd64"
	case ArchAArch64:
		return "arm64"
	}
	return arch
}

// KernelArch returns the Debian architecture a linux-image package name is built for, by its
// flavour suffix ("linux-image-6.1.0-56-arm64" → "arm64"), or "" when the name does not say.
func KernelArch(pkg string) string {
	if !strings.HasPrefix(pkg, "linux-image-") {
		return ""
	}
	m := kernelArch.FindStringSubmatch(pkg)
	if m == nil {
		return ""
	}
	switch m[1] {
	case "armmp", "armmp-lpae":
		return "armhf"
	case "686", "686-pae":
		return "i386"
	case "rpi":
		return "armel"
	}
	return m[1]
}

// Line returns the line of the board file that sets field ("kernel.package"), or 0.
func (b *Board) Line(field string) int { return tomllines.LineOf(b.lines, field) }

//go:embed boards/*.toml
var builtin embed.FS

// Names lists the built-in boards, sorted.
func Names() []string {
	ents, _ := builtin.ReadDir("boards")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".toml"))
	}
	sort.Strings(out)
	return out
}

// Builtin returns the built-in board name; errors wrap ErrUnknown.
func Builtin(name string) (*Board, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("%w %q: built-in boards are %s", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	data, err := builtin.ReadFile(path.Join("boards", name+".toml"))
	if err != nil {
		return nil, fmt.Errorf("%w %q: built-in boards are %s", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	b, err := Parse("boards/"+name+".toml (built-in)", data)
	if err != nil {
		panic("board: built-in board " + name + ": " + err.Error())
	}
	return b, nil
}

// All returns the built-in boards, sorted by name.
func All() []*Board {
	var out []*Board
	for _, n := range Names() {
		b, _ := Builtin(n)
		out = append(out, b)
	}
	return out
}

// IsPath reports whether ref names a board file rather than a built-in board.
func IsPath(ref string) bool {
	return strings.HasSuffix(ref, ".toml") || strings.ContainsAny(ref, `/\`)
}

// Load reads the board file at file.
func Load(file string) (*Board, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("load board %s: %w", file, err)
	}
	if !st.Mode().IsRegular() { // a FIFO or device would block or never end
		return nil, fmt.Errorf("load board %s: %w: not a regular file", file, ErrInvalid)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("load board %s: %w", file, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("load board %s: %w", file, err)
	}
	if buf.Len() > MaxFileSize {
		return nil, fmt.Errorf("load board %s: %w: larger than %d KiB", file, ErrInvalid, MaxFileSize>>10)
	}
	return Parse(file, buf.Bytes())
}

// Parse parses and validates board file data read from file (used in messages).
func Parse(file string, data []byte) (*Board, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Problems: []Problem{{File: file, Msg: fmt.Sprintf("larger than %d KiB", MaxFileSize>>10)}}}
	}
	b := &Board{File: file}
	md, err := toml.Decode(string(data), b)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: file, Problems: []Problem{{File: file, Line: pe.Position.Line, Field: pe.LastKey,
				Msg: pe.Message}}}
		}
		return nil, &Error{File: file, Problems: []Problem{{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}}
	}
	b.lines = tomllines.Scan(strings.Split(string(data), "\n"))
	v := &validator{b: b}
	for _, k := range md.Undecoded() {
		v.add(k.String(), "check the spelling (see docs/boards.md)", "unknown field %q", k.String())
	}
	v.check()
	if len(v.probs) > 0 {
		key := func(p Problem) int {
			if p.Line == 0 {
				return 1 << 30
			}
			return p.Line
		}
		sort.SliceStable(v.probs, func(i, j int) bool { return key(v.probs[i]) < key(v.probs[j]) })
		return nil, &Error{File: file, Problems: v.probs}
	}
	return b, nil
}

// Problem is one problem in a board file.
type Problem struct {
	File  string
	Line  int // 0: unknown
	Field string
	Msg   string
	Hint  string
}

func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	if p.Field != "" {
		s += ": " + p.Field
	}
	s += ": " + p.Msg
	if p.Hint != "" {
		s += " (" + p.Hint + ")"
	}
	return s
}

// Error lists the problems of a board file. errors.Is(err, ErrInvalid) holds.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		sb.WriteString("\n  " + p.String())
	}
	return sb.String()
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

type validator struct {
	b     *Board
	probs []Problem
}

func (v *validator) add(field, hint, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.b.File, Line: v.b.Line(field), Field: field,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,47}$`)
	pkgRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
	moduleRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	ttyRe    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,15}$`)
	dtbRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9,._-]{0,63}$`)
	compRe   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	// kernelArch: the Debian architecture a linux-image package name ends in.
	kernelArch = regexp.MustCompile(`-(amd64|arm64|armmp(-lpae)?|686(-pae)?|rpi|powerpc64le|s390x|riscv64)(-unsigned)?$`)
)

// machines are the QEMU machines the preview knows, per arch.
var machines = map[string][]string{ArchX86_64: {"q35"}, ArchAArch64: {"virt", "raspi3b"}}

func (v *validator) check() {
	b := v.b
	if !nameRe.MatchString(b.Name) {
		v.add("name", "use 1–48 lowercase letters, digits, '.', '_' or '-'", "bad board name %q", b.Name)
	}
	if strings.ContainsAny(b.Description, "\n\r") || len(b.Description) > 200 {
		v.add("description", "keep it to one line of at most 200 bytes", "description too long or has a line break")
	}
	archOK := true
	switch b.Arch {
	case ArchX86_64, ArchAArch64:
	default:
		archOK = false
		v.add("arch", `use "x86_64" or "aarch64"`, "unsupported arch %q", b.Arch)
	}
	switch b.Firmware {
	case FirmwareUEFI:
	case FirmwareBIOS, FirmwareHybrid:
		if archOK && b.Arch != ArchX86_64 {
			v.add("firmware", `use "uefi" (legacy BIOS exists only on x86_64)`, "firmware %q needs arch x86_64, the board is %s", b.Firmware, b.Arch)
		}
	case FirmwareRPi:
		if archOK && b.Arch != ArchAArch64 {
			v.add("firmware", `use arch "aarch64" (Kiln builds 64-bit Raspberry Pi images)`, "firmware %q needs arch aarch64, the board is %s", b.Firmware, b.Arch)
		}
	default:
		v.add("firmware", `use "uefi", "bios", "hybrid" or "rpi"`, "unknown firmware %q", b.Firmware)
	}
	k := b.Kernel
	v.pkg("kernel.package", k.Package, true)
	if a := KernelArch(k.Package); archOK && a != "" && a != b.DebianArch() {
		v.add("kernel.package", fmt.Sprintf("use a kernel built for %s, such as linux-image-%s", b.DebianArch(), b.DebianArch()),
			"kernel %s is built for %s, the board's arch is %s", k.Package, a, b.Arch)
	}
	if !ttyRe.MatchString(k.Console) {
		v.add("kernel.console", `name the serial console device without /dev/, such as "ttyS0" or "ttyAMA0"`, "bad console %q", k.Console)
	}
	if strings.ContainsAny(k.Cmdline, "\n\r\x00") || len(k.Cmdline) > 1024 {
		v.add("kernel.cmdline", "write the command line on one line of at most 1024 bytes", "bad cmdline")
	}
	for i, m := range k.Modules {
		if !moduleRe.MatchString(strings.TrimSuffix(m, ".ko")) {
			v.add(fmt.Sprintf("kernel.modules[%d]", i), `give module names such as "virtio_blk"`, "bad module name %q", m)
		}
	}
	for i, d := range k.DeviceTrees {
		if !dtbRe.MatchString(strings.TrimSuffix(d, ".dtb")) {
			v.add(fmt.Sprintf("kernel.device_trees[%d]", i), `give device tree names such as "bcm2711-rpi-4-b"`, "bad device tree name %q", d)
		}
	}
	if b.Firmware == FirmwareRPi && len(k.DeviceTrees) == 0 {
		v.add("kernel.device_trees", "list the device trees the Pi firmware may load", "firmware rpi needs device trees")
	}
	bt := b.Boot
	switch b.Firmware {
	case FirmwareUEFI, FirmwareHybrid:
		v.pkg("boot.bootloader", bt.Bootloader, true)
	}
	switch b.Firmware {
	case FirmwareBIOS, FirmwareHybrid:
		v.pkg("boot.grub", bt.GRUB, true)
	default:
		v.pkg("boot.grub", bt.GRUB, false)
	}
	v.pkg("boot.firmware_package", bt.FirmwarePackage, b.Firmware == FirmwareRPi)
	if bt.FirmwareComponent != "" && !compRe.MatchString(bt.FirmwareComponent) {
		v.add("boot.firmware_component", `name an archive component such as "non-free-firmware"`, "bad component %q", bt.FirmwareComponent)
	}
	for i, p := range b.WiFi.Packages {
		v.pkg(fmt.Sprintf("wifi.packages[%d]", i), p, true)
	}
	for i, m := range b.WiFi.Modules {
		if !moduleRe.MatchString(strings.TrimSuffix(m, ".ko")) {
			v.add(fmt.Sprintf("wifi.modules[%d]", i), `give module names such as "brcmfmac"`, "bad module name %q", m)
		}
	}
	if c := b.WiFi.Component; c != "" && !compRe.MatchString(c) {
		v.add("wifi.component", `name an archive component such as "non-free-firmware"`, "bad component %q", c)
	}
	if bt.BootTries < 1 || bt.BootTries > 10 {
		v.add("boot.boot_tries", "use 1–10 (3 is a good choice)", "boot_tries %d is out of range", bt.BootTries)
	}
	l := b.Layout
	for _, f := range []struct {
		name string
		s    units.Size
	}{{"layout.disk_size", l.DiskSize}, {"layout.esp_size", l.ESPSize}, {"layout.data_size", l.DataSize}} {
		if f.s < 0 || f.s%units.MiB != 0 || f.s > 2*units.TiB {
			v.add(f.name, `use whole MiB up to 2TiB, such as "512MiB"`, "bad size %d", int64(f.s))
		}
	}
	if l.DiskSize == 0 || l.ESPSize == 0 {
		v.add(v.first("layout.disk_size", "layout.esp_size"), "give disk_size and esp_size", "layout incomplete")
	}
	if archOK {
		known := machines[b.Arch]
		ok := b.Preview.Machine == ""
		for _, m := range known {
			ok = ok || m == b.Preview.Machine
		}
		if !ok {
			v.add("preview.machine", fmt.Sprintf("use one of %s, or leave it out", strings.Join(known, ", ")),
				"kiln cannot preview machine %q for %s", b.Preview.Machine, b.Arch)
		}
	}
}

// first returns the first field the file sets, else the first.
func (v *validator) first(fields ...string) string {
	for _, f := range fields {
		if _, ok := v.b.lines[f]; ok {
			return f
		}
	}
	return fields[0]
}

func (v *validator) pkg(field, name string, required bool) {
	switch {
	case name == "" && required:
		v.add(field, "name a Debian package", "no package given")
	case name != "" && !pkgRe.MatchString(name):
		v.add(field, "name a Debian package (lowercase)", "bad package name %q", name)
	}
}
