package vmrunner

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
)

// Machine is a kind of computer QEMU emulates for previews. Machines lists them; Config.Machine
// picks one by name.
type Machine struct {
	Name     string // QEMU's -machine type
	Arch     string // guest architecture: x86_64, aarch64
	QEMU     string // the qemu-system binary
	Firmware string // machine type the firmware descriptors are matched against ("pc-q35-7.2")
	TCGCPU   string // -cpu under TCG
	TCGAccel string // -accel under TCG
	Display  string // the graphics device
	Keyboard bool   // add a USB keyboard with a display (the machine has no built-in one)
	BIOS     bool   // legacy BIOS (SeaBIOS) boots on it
	IDE      bool   // it has an IDE bus for a CD-ROM
	// Direct is set for a board whose firmware QEMU does not emulate: QEMU starts the image's
	// own kernel (raspi.go).
	Direct *Direct
}

// Machines are the machines previews run on, by name.
var Machines = map[string]Machine{
	"q35": {Name: "q35", Arch: "x86_64", QEMU: "qemu-system-x86_64", Firmware: "pc-q35-7.2", TCGCPU: "max",
		TCGAccel: "tcg,thread=multi", Display: "VGA", BIOS: true, IDE: true},
	// cortex-a72: "max" emulates pointer authentication and boots 4× slower under TCG.
	"virt": {Name: "virt", Arch: "aarch64", QEMU: "qemu-system-aarch64", Firmware: "virt-7.2", TCGCPU: "cortex-a72",
		TCGAccel: "tcg,thread=multi", Display: "virtio-gpu-pci", Keyboard: true},
	// One TCG thread: raspi3b's 4 cores on a 2-core host reach userspace in 6 s instead of 45 s.
	"raspi3b": {Name: "raspi3b", Arch: "aarch64", QEMU: "qemu-system-aarch64", TCGCPU: "cortex-a53",
		TCGAccel: "tcg,thread=single", Display: "builtin", Direct: raspi3b},
}

// DefaultMachine is the machine of Config.Machine "".
const DefaultMachine = "q35"

// MachineForArch returns the default machine for a guest architecture (x86_64: q35, aarch64:
// virt).
func MachineForArch(arch string) (Machine, error) {
	for _, m := range []string{"q35", "virt"} {
		if Machines[m].Arch == arch {
			return Machines[m], nil
		}
	}
	return Machine{}, fmt.Errorf("no preview machine for arch %q", arch)
}

// LookupMachine returns the machine name names ("": DefaultMachine).
func LookupMachine(name string) (Machine, error) {
	if name == "" {
		name = DefaultMachine
	}
	m, ok := Machines[name]
	if !ok {
		var names []string
		for n := range Machines {
			names = append(names, n)
		}
		sort.Strings(names)
		return Machine{}, fmt.Errorf("unknown machine %q (kiln previews %s)", name, strings.Join(names, ", "))
	}
	return m, nil
}

// hostArch is the host's architecture in QEMU's naming.
func hostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}
