package vmrunner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/internal/testenv"
)

const raspiMarker = "kiln-raspi3b-marker"

// raspiKernel is a bare-metal arm64 program that prints raspiMarker on the Raspberry Pi 3's
// first UART (the PL011 at 0x3f201000) and parks. Assembled by hand:
//
//	0x00 d53800a0       mrs  x0, mpidr_el1
//	0x04 92400400       and  x0, x0, #3
//	0x08 b5000100       cbnz x0, park         ; other cores park
//	0x0c d2820001       mov  x1, #0x1000
//	0x10 f2a7e401       movk x1, #0x3f20, lsl #16
//	0x14 100000e2       adr  x2, msg          ; 0x30
//	0x18 38401443 loop: ldrb w3, [x2], #1
//	0x1c 34000063       cbz  w3, park
//	0x20 b9000023       str  w3, [x1]
//	0x24 17fffffd       b    loop
//	0x28 d503205f park: wfe
//	0x2c 17ffffff       b    park
//	0x30          msg:  raspiMarker, "\n", 0
func raspiKernel() []byte {
	var b []byte
	for _, ins := range []uint32{0xd53800a0, 0x92400400, 0xb5000100, 0xd2820001, 0xf2a7e401, 0x100000e2,
		0x38401443, 0x34000063, 0xb9000023, 0x17fffffd, 0xd503205f, 0x17ffffff} {
		b = binary.LittleEndian.AppendUint32(b, ins)
	}
	return append(b, raspiMarker+"\n\x00"...)
}

// tinyDTB is a flattened device tree with a root (#address-cells, #size-cells), /memory and
// /chosen: what QEMU needs to add the memory size, command line and initramfs.
func tinyDTB() []byte {
	var st, strs []byte
	be := func(v uint32) { st = binary.BigEndian.AppendUint32(st, v) }
	name := func(s string) {
		st = append(st, s...)
		st = append(st, 0)
		for len(st)%4 != 0 {
			st = append(st, 0)
		}
	}
	prop := func(n string, v []byte) {
		be(3)
		be(uint32(len(v)))
		be(uint32(len(strs)))
		strs = append(append(strs, n...), 0)
		st = append(st, v...)
		for len(st)%4 != 0 {
			st = append(st, 0)
		}
	}
	cell := func(vs ...uint32) (b []byte) {
		for _, v := range vs {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	be(1)
	name("")
	prop("#address-cells", cell(1))
	prop("#size-cells", cell(1))
	prop("compatible", []byte("raspberrypi,3-model-b\x00"))
	be(1)
	name("memory")
	prop("device_type", []byte("memory\x00"))
	prop("reg", cell(0, 0x40000000))
	be(2)
	be(1)
	name("chosen")
	be(2)
	be(2)
	be(9)
	const hdr = 40
	rsv := make([]byte, 16)
	total := hdr + len(rsv) + len(st) + len(strs)
	h := cell(0xd00dfeed, uint32(total), uint32(hdr+len(rsv)), uint32(hdr+len(rsv)+len(st)), hdr, 17, 16, 0,
		uint32(len(strs)), uint32(len(st)))
	return slices.Concat(h, rsv, st, strs)
}

// raspiImage writes a tryboot A/B Pi image (autoboot.txt on 1, boot slot 2, spare 3) of 122 MiB,
// not a power of two.
func raspiImage(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pi.img")
	slot := []fat.File{
		{Path: "config.txt", Data: []byte("[all]\narm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n[pi4]\ndevice_tree=bcm2711-rpi-4-b.dtb\n[pi3]\ndevice_tree=bcm2710-rpi-3-b.dtb\n")},
		{Path: "cmdline.txt", Data: []byte("console=serial0,115200 kiln.slot=2 quiet\n")},
		{Path: "vmlinuz", Data: raspiKernel()},
		{Path: "initrd.img", Data: []byte("initramfs")},
		{Path: "bcm2710-rpi-3-b.dtb", Data: tinyDTB()},
	}
	_, _, err := rpiboot.WriteImage(context.Background(), p, 122<<20, 1, []rpiboot.Part{
		{Size: 40 << 20, Type: rpiboot.TypeFAT32, Files: []fat.File{{Path: rpiboot.AutobootFile, Data: rpiboot.Autoboot{Boot: 2, Try: 3}.Encode()}}},
		{Size: 40 << 20, Type: rpiboot.TypeFAT32, Files: slot},
		{Size: 40 << 20, Type: rpiboot.TypeFAT32},
	}, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRaspiBootFiles(t *testing.T) {
	boot, files, err := bootFiles(raspiImage(t), raspi3b)
	if err != nil {
		t.Fatal(err)
	}
	if boot != (rpiboot.Boot{Kernel: "vmlinuz", Initramfs: "initrd.img", DeviceTree: "bcm2710-rpi-3-b.dtb", Cmdline: "cmdline.txt"}) {
		t.Fatalf("boot files %+v", boot)
	}
	if !bytes.Equal(files["vmlinuz"], raspiKernel()) || !bytes.Equal(files["bcm2710-rpi-3-b.dtb"], tinyDTB()) {
		t.Fatal("kernel or device tree read wrongly")
	}
	if got := kernelCmdline(string(files["cmdline.txt"]), "ttyAMA0"); got != "console=ttyAMA0,115200 kiln.slot=2 quiet" {
		t.Fatalf("kernel command line %q", got)
	}
	// Not a Pi image: a clear error.
	if _, _, err := bootFiles(writeMBRImage(t, "pc.img"), raspi3b); err == nil {
		t.Fatal("a PC boot sector passed as a Pi image")
	}
}

func TestRaspiCommandLine(t *testing.T) {
	s := baseSpec()
	s.Machine, s.Firmware, s.Attach, s.CPUs = Machines["raspi3b"], FirmwareKernel, AttachSD, 4
	s.Format, s.Image = FormatQCOW2, "/run/k/sd.qcow2"
	s.Kernel, s.DTB, s.Initrd, s.Append = "/run/k/boot-vmlinuz", "/run/k/boot.dtb", "/run/k/boot-initrd.img", "console=ttyAMA0,115200"
	args, err := CommandLine(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"-machine", "raspi3b", "-accel", "tcg,thread=single"},
		{"-smp", "4", "-m", "1024M"},
		{"-kernel", "/run/k/boot-vmlinuz", "-append", "console=ttyAMA0,115200"},
		{"-dtb", "/run/k/boot.dtb"}, {"-initrd", "/run/k/boot-initrd.img"},
		{"-drive", "if=sd,index=0,file=/run/k/sd.qcow2,format=qcow2"}, {"-snapshot"},
		{"-chardev", "socket,id=serial0,path=/run/k/serial.sock,server=on,wait=off,logfile=/run/k/serial.log,logappend=off", "-serial", "chardev:serial0"},
		{"-mon", "chardev=qmp0,mode=control"},
	} {
		if !hasSeq(args, want...) {
			t.Errorf("missing %q in %q", want, args)
		}
	}
	s.Firmware = FirmwareBIOS
	if _, err := CommandLine(s); err == nil {
		t.Error("a Pi with a PC BIOS passed")
	}
}

// TestRaspi3bPreview boots a Pi image on QEMU's raspi3b: the kernel comes from the boot slot
// autoboot.txt names, the image of 122 MiB becomes a 128 MiB SD card through an overlay, and the
// program's output arrives on the serial console. The image is not changed.
func TestRaspi3bPreview(t *testing.T) {
	if _, err := FindQEMUFor("", Machines["raspi3b"]); err != nil {
		testenv.Missing(t, "%v", err)
	}
	img := raspiImage(t)
	before, _ := os.ReadFile(img)
	if !IsPiImage(img) || IsPiImage(writeMBRImage(t, "pc.img")) {
		t.Fatal("IsPiImage does not tell a Pi image from a PC one")
	}
	vm := startVM(t, Config{Image: img, Display: DisplayNone}) // the machine follows from the image
	waitFor(t, vm, raspiMarker)
	info := vm.Info()
	if !strings.Contains(strings.Join(info.Args, " "), "if=sd,index=0,file="+filepath.Join(info.RunDir, "sd.qcow2")) ||
		!strings.Contains(info.Accel.Reason, "firmware is not emulated") {
		t.Errorf("command line %q, accelerator note %q", info.Args, info.Accel.Reason)
	}
	vm.Stop()
	after, _ := os.ReadFile(img)
	if sha256.Sum256(before) != sha256.Sum256(after) {
		t.Fatal("the preview changed the image")
	}
}

// FuzzPiBootFiles feeds damaged Pi images (a valid one with bytes changed) to the preview's
// reader of the boot partition: it fails cleanly or returns files, never panics or hangs.
func FuzzPiBootFiles(f *testing.F) {
	img, err := os.ReadFile(raspiImage(f))
	if err != nil {
		f.Skip(err)
	}
	f.Add(uint32(446+8), []byte{0xff, 0xff})       // partition 1 start
	f.Add(uint32(1<<20+11), []byte{0x00, 0x00})    // sector size of partition 1
	f.Add(uint32(1<<20+0x4000), []byte("garbage")) // FAT of partition 1
	f.Add(uint32(41<<20), []byte{0xde, 0xad})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, at uint32, patch []byte) {
		b := bytes.Clone(img)
		if int(at) < len(b) {
			copy(b[at:], patch)
		}
		p := filepath.Join(dir, "fuzz.img")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if boot, files, err := bootFiles(p, raspi3b); err == nil && files[boot.Kernel] == nil {
			t.Fatalf("no kernel returned for %+v", boot)
		}
	})
}
