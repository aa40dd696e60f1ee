package vmrunner

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
)

// piRecipe is an arm64 image whose initramfs has the Pi 3's SD card (sdhost) and watchdog drivers.
const piRecipe = `kiln = 1
name = "tiny-pi"
version = "1.0.0"
[board]
name = "arm64-uefi"
[kernel]
modules = ["bcm2835", "bcm2835_wdt", "vfat", "nls_cp437", "nls_ascii"]
[system]
hostname = "pihost"
`

// TestKilnImageOnRaspi3b lays a Kiln arm64 kernel and initramfs out as a Raspberry Pi image
// (autoboot.txt, boot slot A with config.txt, cmdline.txt and Debian's Pi 3 device tree, data
// partition) and previews it on raspi3b: the kernel boots with the device tree from the image,
// reaches the ready line with the recipe's hostname on the first UART, finds its data partition on
// the SD card and mounts the Pi boot partitions for kiln-agent.
func TestKilnImageOnRaspi3b(t *testing.T) {
	if _, err := FindQEMUFor("", Machines["raspi3b"]); err != nil {
		testenv.Missing(t, "%v", err)
	}
	res := testimage.Build(t, piRecipe)
	img, err := os.ReadFile(res.UKI)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := uki.Sections(img)
	if err != nil {
		t.Fatal(err)
	}
	part := map[string][]byte{}
	for _, s := range secs {
		part[s.Name] = s.Data
	}
	dtb := piDTB(t)
	parts, err := rpiboot.Parts(rpiboot.SlotInput{
		// QEMU does not run the firmware; the slot still needs start.elf to be bootable on a Pi.
		Firmware:    map[string][]byte{"bootcode.bin": []byte("not emulated"), "start.elf": []byte("not emulated")},
		DeviceTrees: map[string][]byte{"bcm2837-rpi-3-b.dtb": dtb},
		Kernel:      part[".linux"], Initramfs: part[".initrd"],
		Cmdline: "console=serial0,115200 " + strings.TrimRight(string(part[".cmdline"]), "\x00"),
	}, 40<<20, 160<<20, rpiboot.Part{Type: rpiboot.TypeFAT32, Label: "KILN-DATA"})
	if err != nil {
		t.Fatal(err)
	}
	pi := filepath.Join(t.TempDir(), "pi.img")
	if _, err := rpiboot.WriteImage(context.Background(), pi, 440<<20, 0x50690001, parts, time.Unix(testimage.SourceDateEpoch, 0), nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vm := startVM(t, Config{Image: pi, Display: DisplayNone})
	waitFor(t, vm, "kiln: ready name=tiny-pi version=1.0.0 hostname=pihost")
	t.Logf("raspi3b: ready line after %v", time.Since(start).Round(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, line := range []string{"mounted on /data", "Raspberry Pi boot partitions mounted on /boot/rpi"} {
		if err := vm.WaitFor(ctx, line); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
}

// piDTB reads the Raspberry Pi 3 B device tree from the arm64 kernel package in the input cache.
func piDTB(t *testing.T) []byte {
	t.Helper()
	dir := assembler.DebsDir(testimage.Cache(t), "arm64")
	m, _ := filepath.Glob(filepath.Join(dir, "linux-image-[0-9]*_arm64.deb"))
	if len(m) == 0 {
		testimage.Missing(t, "no arm64 kernel package in "+dir+" (run `make inputs`)")
	}
	p, err := deb.Open(m[0])
	if err != nil {
		t.Fatal(err)
	}
	var dtb []byte
	err = p.Walk(func(h *tar.Header, r io.Reader) error {
		if strings.HasSuffix(h.Name, "/broadcom/bcm2837-rpi-3-b.dtb") {
			dtb, err = io.ReadAll(r)
			return err
		}
		return nil
	})
	if err != nil || !bytes.HasPrefix(dtb, []byte{0xd0, 0x0d, 0xfe, 0xed}) {
		t.Fatalf("no bcm2837-rpi-3-b.dtb in %s: %v", m[0], err)
	}
	return dtb
}
