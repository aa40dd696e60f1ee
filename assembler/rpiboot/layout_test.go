package rpiboot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

func slotInput() SlotInput {
	return SlotInput{
		Firmware: map[string][]byte{"bootcode.bin": []byte("bootcode"), "start.elf": []byte("start"), "start4.elf": []byte("start4"),
			"fixup.dat": []byte("fixup"), "fixup4.dat": []byte("fixup4")},
		DeviceTrees: map[string][]byte{"bcm2837-rpi-3-b.dtb": []byte("pi3"), "bcm2711-rpi-4-b.dtb": []byte("pi4"),
			"bcm2711-rpi-400.dtb": []byte("pi400"), "bcm2711-rpi-cm4-io.dtb": []byte("cm4")},
		Overlays:  map[string][]byte{"disable-bt.dtbo": []byte("overlay")},
		Kernel:    []byte("kernel image"),
		Initramfs: []byte("initramfs"),
		Cmdline:   "console=tty1 console=serial0,115200 kiln.slot=9 quiet",
	}
}

func TestConfigTxtPerModel(t *testing.T) {
	conf := ConfigTxt(slotInput().DeviceTrees)
	for model, dtb := range map[string]string{"pi3": "bcm2837-rpi-3-b.dtb", "pi4": "bcm2711-rpi-4-b.dtb",
		"pi400": "bcm2711-rpi-400.dtb", "cm4": "bcm2711-rpi-cm4-io.dtb", "pi02": ""} {
		b, err := ParseConfig(conf, model)
		if err != nil {
			t.Fatal(err)
		}
		if b != (Boot{Kernel: KernelFile, Initramfs: InitrdFile, DeviceTree: dtb, Cmdline: "cmdline.txt"}) {
			t.Errorf("%s: %+v", model, b)
		}
	}
	for _, want := range []string{"arm_64bit=1\n", "enable_uart=1\n"} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("config.txt lacks %q", want)
		}
	}
	if got := string(CmdlineTxt("console=serial0,115200  kiln.slot=2 quiet", 3)); got != "console=serial0,115200 quiet kiln.slot=3\n" {
		t.Errorf("cmdline.txt %q", got)
	}
}

// TestPiImage writes a whole Pi image and reads it back with mtools and fsck.vfat.
func TestPiImage(t *testing.T) {
	parts, err := Parts(slotInput(), 40<<20, 48<<20, Part{Type: TypeLinux})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "pi.img")
	res, _, err := WriteImage(context.Background(), img, 160<<20, 7, parts, time.Unix(1700000000, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(img)
	mtype, fsck := testenv.Tool(t, "mtype"), testenv.Tool(t, "fsck.vfat")
	part := func(n int) string {
		p := filepath.Join(dir, "p"+string(rune('0'+n)))
		r := res[n-1]
		os.WriteFile(p, data[r.Start:r.Start+r.Size], 0o644)
		if out, err := exec.Command(fsck, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat -n partition %d: %v\n%s", n, err, out)
		}
		return p
	}
	read := func(p, name string) string {
		out, err := exec.Command(mtype, "-i", p, "::"+name).Output()
		if err != nil {
			t.Errorf("mtype %s: %v", name, err)
		}
		return string(out)
	}
	p1, p2 := part(1), part(2)
	part(3)
	if ab, err := ParseAutoboot([]byte(read(p1, AutobootFile))); err != nil || ab != (Autoboot{Boot: 2, Try: 3}) {
		t.Errorf("autoboot.txt: %+v, %v", ab, err)
	}
	if read(p1, "bootcode.bin") != "bootcode" {
		t.Error("bootcode.bin missing from partition 1")
	}
	in := slotInput()
	for name, want := range map[string]string{
		"config.txt": string(ConfigTxt(in.DeviceTrees)), "cmdline.txt": "console=tty1 console=serial0,115200 quiet kiln.slot=2\n",
		KernelFile: "kernel image", InitrdFile: "initramfs", "start4.elf": "start4", "fixup.dat": "fixup",
		"bcm2711-rpi-4-b.dtb": "pi4", "overlays/disable-bt.dtbo": "overlay",
	} {
		if got := read(p2, name); got != want {
			t.Errorf("partition 2 %s = %q, want %q", name, got, want)
		}
	}
	if out, err := exec.Command(testenv.Tool(t, "sfdisk"), "--dump", img).Output(); err != nil || !strings.Contains(string(out), "type=83") {
		t.Errorf("sfdisk --dump: %v\n%s", err, out)
	}
	bad := slotInput()
	delete(bad.Firmware, "start.elf")
	delete(bad.Firmware, "start4.elf")
	if _, err := Parts(bad, 40<<20, 48<<20, Part{Type: TypeLinux}); err == nil {
		t.Error("a slot without start*.elf passed")
	}
}
