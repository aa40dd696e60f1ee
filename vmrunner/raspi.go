package vmrunner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/flasher/customise"
)

// FirmwareKernel: QEMU loads the image's kernel, device tree and initramfs itself, because the
// board's firmware is not emulated.
const FirmwareKernel FirmwareKind = "kernel"

// AttachSD: the image is the board's SD card.
const AttachSD Attach = "sd"

// Direct describes a board whose firmware QEMU does not emulate.
type Direct struct {
	cpus    int      // fixed by the board
	memMiB  int      // fixed by the board
	model   string   // config.txt section filter of the model
	dtbs    []string // device trees the firmware would pick, in order
	console string   // the first UART's kernel name, for console=serial0
	note    string   // what the preview does not emulate
}

var raspi3b = &Direct{
	cpus: 4, memMiB: 1024, model: "pi3",
	dtbs:    []string{"bcm2710-rpi-3-b.dtb", "bcm2837-rpi-3-b.dtb"},
	console: "ttyAMA0",
	note:    "Raspberry Pi firmware is not emulated: QEMU starts the image's kernel, device tree and initramfs from its boot partition itself (config.txt settings other than kernel, initramfs, device_tree and cmdline do not apply)",
}

// IsPiImage reports whether image is a raw Raspberry Pi disk image: an MBR whose first
// partition is a FAT file system with autoboot.txt or config.txt, the files the Pi firmware
// reads first.
func IsPiImage(image string) bool {
	f, err := os.Open(image)
	if err != nil {
		return false
	}
	defer f.Close()
	parts, err := mbrPartitions(f)
	if err != nil {
		return false
	}
	p, ok := parts[1]
	if !ok {
		return false
	}
	m, err := customise.ReadFiles(f, p[0], p[1], []string{rpiboot.AutobootFile, "config.txt"}, rpiboot.MaxConfig)
	return err == nil && len(m) > 0
}

// resolveDirect fills in what a board fixes.
func resolveDirect(spec *Spec) error {
	d := spec.Machine.Direct
	if spec.Format != FormatRaw {
		return fmt.Errorf("preview on %s: the image must be a raw disk image (it is %s)", spec.Machine.Name, spec.Format)
	}
	spec.Firmware, spec.Attach = FirmwareKernel, AttachSD
	spec.CPUs, spec.MemoryMiB = d.cpus, d.memMiB
	return nil
}

// prepareDirect extracts the kernel, device tree and initramfs the firmware would load into
// runDir and gives QEMU an SD card of a power-of-two size (QEMU refuses others): a qcow2
// overlay over the image, or the persistent copy grown in place. The image is not written.
func prepareDirect(ctx context.Context, spec *Spec, qemu, runDir string) error {
	b := spec.Machine.Direct
	boot, files, err := bootFiles(spec.Image, b)
	if err != nil {
		return fmt.Errorf("preview on %s: %w", spec.Machine.Name, err)
	}
	for _, f := range []struct {
		dst  *string
		name string
	}{{&spec.Kernel, boot.Kernel}, {&spec.Initrd, boot.Initramfs}, {&spec.DTB, boot.DeviceTree}} {
		if f.name == "" {
			continue
		}
		*f.dst = filepath.Join(runDir, "boot-"+filepath.Base(f.name))
		if err := os.WriteFile(*f.dst, files[f.name], 0o600); err != nil {
			return fmt.Errorf("preview on %s: %w", spec.Machine.Name, err)
		}
	}
	spec.Append = kernelCmdline(string(files[boot.Cmdline]), b.console)

	st, err := os.Stat(spec.Image)
	if err != nil {
		return err
	}
	size := pow2(st.Size())
	if size == st.Size() {
		return nil
	}
	if !spec.Snapshot { // the persistent copy is the preview's own file
		return os.Truncate(spec.Image, size)
	}
	img := filepath.Join(filepath.Dir(qemu), "qemu-img")
	if _, err := os.Stat(img); err != nil {
		img = "qemu-img"
	}
	overlay := filepath.Join(runDir, "sd.qcow2")
	out, err := exec.CommandContext(ctx, img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", spec.Image,
		overlay, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("preview on %s: SD card overlay of %d bytes: %v: %s (qemu-img is in Debian's qemu-utils)",
			spec.Machine.Name, size, err, strings.TrimSpace(string(out)))
	}
	spec.Image, spec.Format = overlay, FormatQCOW2
	return nil
}

// pow2 is the smallest power of two ≥ n.
func pow2(n int64) int64 {
	p := int64(1 << 20)
	for p < n {
		p <<= 1
	}
	return p
}

// kernelCmdline turns cmdline.txt into the kernel's command line, naming the UART the firmware
// would have put in place of serial0.
func kernelCmdline(s, console string) string {
	f := strings.Fields(s)
	for i, a := range f {
		if v, ok := strings.CutPrefix(a, "console=serial0"); ok {
			f[i] = "console=" + console + v
		}
	}
	return strings.Join(f, " ")
}

// maxBootFile bounds a kernel, initramfs or device tree read from an image.
const maxBootFile = 256 << 20

// bootFiles finds the boot partition as the firmware does — partition 1, or the one
// autoboot.txt on it names — and reads config.txt and the files it names from it.
func bootFiles(image string, b *Direct) (rpiboot.Boot, map[string][]byte, error) {
	f, err := os.Open(image)
	if err != nil {
		return rpiboot.Boot{}, nil, err
	}
	defer f.Close()
	parts, err := mbrPartitions(f)
	if err != nil {
		return rpiboot.Boot{}, nil, err
	}
	read := func(n int, names ...string) (map[string][]byte, error) {
		p, ok := parts[n]
		if !ok {
			return nil, fmt.Errorf("no partition %d in the MBR", n)
		}
		m, err := customise.ReadFiles(f, p[0], p[1], names, maxBootFile)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", n, err)
		}
		return m, nil
	}
	first, err := read(1, rpiboot.AutobootFile, "config.txt")
	if err != nil {
		return rpiboot.Boot{}, nil, err
	}
	n, conf := 1, first["config.txt"]
	if ab, ok := first[rpiboot.AutobootFile]; ok {
		a, err := rpiboot.ParseAutoboot(ab)
		if err != nil {
			return rpiboot.Boot{}, nil, err
		}
		n = a.Boot
		m, err := read(n, "config.txt")
		if err != nil {
			return rpiboot.Boot{}, nil, err
		}
		conf = m["config.txt"]
	}
	if conf == nil {
		return rpiboot.Boot{}, nil, fmt.Errorf("partition %d has no config.txt: not a Raspberry Pi image", n)
	}
	boot, err := rpiboot.ParseConfig(conf, b.model)
	if err != nil {
		return rpiboot.Boot{}, nil, fmt.Errorf("partition %d: %w", n, err)
	}
	names := []string{boot.Kernel, boot.Cmdline}
	if boot.Initramfs != "" {
		names = append(names, boot.Initramfs)
	}
	dtbs := b.dtbs
	if boot.DeviceTree != "" {
		dtbs = []string{boot.DeviceTree}
	}
	names = append(names, dtbs...)
	files, err := read(n, names...)
	if err != nil {
		return rpiboot.Boot{}, nil, err
	}
	boot.DeviceTree = ""
	for _, d := range dtbs {
		if _, ok := files[d]; ok {
			boot.DeviceTree = d
			break
		}
	}
	for what, name := range map[string]string{"kernel": boot.Kernel, "device tree": strings.Join(dtbs, " or "), "initramfs": boot.Initramfs} {
		if (what == "device tree" && boot.DeviceTree == "") || (what != "device tree" && name != "" && files[name] == nil) {
			return rpiboot.Boot{}, nil, fmt.Errorf("partition %d has no %s %s (named by config.txt)", n, what, name)
		}
	}
	return boot, files, nil
}

// mbrPartitions reads the primary MBR partitions: number → offset, size in bytes.
func mbrPartitions(r io.ReaderAt) (map[int][2]int64, error) {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("read the partition table: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, errors.New("no MBR partition table (the Raspberry Pi boot ROM reads only MBR)")
	}
	out := map[int][2]int64{}
	for i := range 4 {
		e := mbr[446+16*i:]
		if e[4] == 0xee {
			return nil, errors.New("the image has a GPT; the Raspberry Pi boot ROM reads only MBR")
		}
		start, n := int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		if e[4] != 0 && start > 0 && n > 0 {
			out[i+1] = [2]int64{start * 512, n * 512}
		}
	}
	return out, nil
}

// directCommandLine is CommandLine for a board: its machine, the extracted kernel, the image as
// its SD card and the serial console on its first UART.
func directCommandLine(s Spec) ([]string, error) {
	a := []string{"-name", "kiln-preview", "-nodefaults", "-no-user-config"}
	add := func(args ...string) { a = append(a, args...) }
	add("-machine", s.Machine.Name, "-accel", s.Machine.TCGAccel)
	add("-smp", strconv.Itoa(s.CPUs), "-m", strconv.Itoa(s.MemoryMiB)+"M")
	add("-kernel", s.Kernel, "-append", s.Append)
	if s.DTB != "" {
		add("-dtb", s.DTB)
	}
	if s.Initrd != "" {
		add("-initrd", s.Initrd)
	}
	add("-drive", opts("if=sd", "index=0", "file="+esc(s.Image), "format="+qemuFormat(s.Format)))
	if s.Snapshot {
		add("-snapshot")
	}
	switch s.Display {
	case DisplayNone:
		add("-display", "none")
	case DisplayVNC:
		add("-display", "none", "-vnc", "unix:"+esc(s.VNCSocket))
	case DisplayWindow:
		add("-display", s.DisplayBackend)
	}
	return append(a, s.plumbing("usb-net")...), nil
}
