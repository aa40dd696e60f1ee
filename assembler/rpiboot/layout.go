package rpiboot

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnproject/kiln/assembler/fat"
)

// A Kiln Pi image, as the firmware's tryboot A/B wants it (MBR partitions):
//
//	1  FAT  autoboot.txt (boot_partition=2, [tryboot] boot_partition=3) and bootcode.bin,
//	        which the Pi 3 and Zero 2 W boot ROM loads from the first FAT partition
//	2  FAT  slot A: firmware, config.txt, cmdline.txt (kiln.slot=2), kernel, initramfs,
//	        device trees, overlays
//	3  FAT  slot B, empty until the first update (the agent copies slot A's firmware into it)
//	4  data (the caller's partition)
//
// Each slot holds start*.elf, which the firmware needs to count a partition as bootable.

// Slot file names; config.txt names them.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
)

// SlotA and SlotB are the boot slots' partition numbers.
const (
	SlotA = 2
	SlotB = 3
)

// SlotInput is the content of a boot slot.
type SlotInput struct {
	// Firmware holds raspi-firmware's files by name (bootcode.bin, start*.elf, fixup*.dat).
	Firmware map[string][]byte
	// DeviceTrees holds the kernel's device trees by file name (bcm2711-rpi-4-b.dtb); Overlays
	// the overlays (disable-bt.dtbo), placed under overlays/.
	DeviceTrees map[string][]byte
	Overlays    map[string][]byte
	Kernel      []byte
	Initramfs   []byte
	Cmdline     string // the kernel command line without kiln.slot
}

// models maps config.txt's model filters, in the order they must appear (more specific after
// more general: [pi4] also matches the Pi 400 and CM4), to the device trees each may use, the
// downstream name first.
var models = []struct {
	filter string
	dtbs   []string
}{
	{"pi3", []string{"bcm2710-rpi-3-b.dtb", "bcm2837-rpi-3-b.dtb"}},
	{"pi3+", []string{"bcm2710-rpi-3-b-plus.dtb", "bcm2837-rpi-3-b-plus.dtb"}},
	{"pi02", []string{"bcm2710-rpi-zero-2-w.dtb", "bcm2837-rpi-zero-2-w.dtb"}},
	{"pi4", []string{"bcm2711-rpi-4-b.dtb"}},
	{"pi400", []string{"bcm2711-rpi-400.dtb"}},
	{"cm4", []string{"bcm2711-rpi-cm4.dtb", "bcm2711-rpi-cm4-io.dtb"}},
}

// ConfigTxt is the slots' config.txt: 64-bit kernel and initramfs from the slot, the serial
// console UART on, and per model the device tree the slot holds.
func ConfigTxt(dtbs map[string][]byte) []byte {
	var b strings.Builder
	b.WriteString("# Raspberry Pi firmware configuration, written by Kiln\n[all]\narm_64bit=1\n")
	fmt.Fprintf(&b, "kernel=%s\ninitramfs %s followkernel\ncmdline=cmdline.txt\n", KernelFile, InitrdFile)
	b.WriteString("enable_uart=1\nupstream_kernel=1\ndisable_overscan=1\n")
	for _, m := range models {
		for _, d := range m.dtbs {
			if _, ok := dtbs[d]; ok {
				fmt.Fprintf(&b, "[%s]\ndevice_tree=%s\n", m.filter, d)
				break
			}
		}
	}
	b.WriteString("[all]\n")
	return []byte(b.String())
}

// CmdlineTxt is a slot's cmdline.txt: the command line with kiln.slot naming the slot, so the
// agent knows which partition it runs from.
func CmdlineTxt(cmdline string, slot int) []byte {
	var f []string
	for _, a := range strings.Fields(cmdline) {
		if !strings.HasPrefix(a, "kiln.slot=") {
			f = append(f, a)
		}
	}
	return []byte(strings.Join(append(f, "kiln.slot="+strconv.Itoa(slot)), " ") + "\n")
}

// SlotFiles lays out a boot slot.
func SlotFiles(in SlotInput, slot int) ([]fat.File, error) {
	if len(in.Kernel) == 0 {
		return nil, fmt.Errorf("Pi boot slot: no kernel")
	}
	if !hasPrefix(in.Firmware, "start") {
		return nil, fmt.Errorf("Pi boot slot: no start*.elf firmware (from raspi-firmware)")
	}
	files := []fat.File{
		{Path: "config.txt", Data: ConfigTxt(in.DeviceTrees)},
		{Path: "cmdline.txt", Data: CmdlineTxt(in.Cmdline, slot)},
		{Path: KernelFile, Data: in.Kernel},
	}
	if in.Initramfs != nil {
		files = append(files, fat.File{Path: InitrdFile, Data: in.Initramfs})
	}
	add := func(dir string, m map[string][]byte) error {
		for _, name := range sortedKeys(m) {
			if name == "" || strings.ContainsAny(name, "/\\") || name[0] == '.' {
				return fmt.Errorf("Pi boot slot: bad file name %q", name)
			}
			files = append(files, fat.File{Path: path.Join(dir, name), Data: m[name]})
		}
		return nil
	}
	for _, g := range []struct {
		dir string
		m   map[string][]byte
	}{{"", in.Firmware}, {"", in.DeviceTrees}, {"overlays", in.Overlays}} {
		if err := add(g.dir, g.m); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// Parts is the image's partition list: autoboot partition, slot A with in, an empty slot B of
// the same size, and data.
func Parts(in SlotInput, autobootSize, slotSize int64, data Part) ([]Part, error) {
	slot, err := SlotFiles(in, SlotA)
	if err != nil {
		return nil, err
	}
	first := []fat.File{{Path: AutobootFile, Data: Autoboot{Boot: SlotA, Try: SlotB}.Encode()}}
	if bc, ok := in.Firmware["bootcode.bin"]; ok {
		first = append(first, fat.File{Path: "bootcode.bin", Data: bc})
	}
	return []Part{
		{Size: autobootSize, Type: TypeFAT32, Label: "RPI-BOOT", Files: first},
		{Size: slotSize, Type: TypeFAT32, Label: "RPI-A", Files: slot},
		{Size: slotSize, Type: TypeFAT32, Label: "RPI-B"},
		data,
	}, nil
}

func hasPrefix(m map[string][]byte, p string) bool {
	for k := range m {
		if strings.HasPrefix(k, p) && strings.HasSuffix(k, ".elf") {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
