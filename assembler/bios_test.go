package assembler_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

const biosRecipe = `
kiln = 1
name = "oldpc"
version = "1.0.0"
[board]
firmware = "bios"
[system]
hostname = "oldpc-bios"
`

const hybridRecipe = `
kiln = 1
name = "anypc"
version = "1.0.0"
[board]
firmware = "hybrid"
[system]
hostname = "anypc-hybrid"
`

// TestBootBIOS boots a BIOS image under SeaBIOS: boot.img, the core image Kiln assembled, GRUB's
// script on the ESP, then the slot's kernel and initramfs up to the ready line.
func TestBootBIOS(t *testing.T) {
	res := testimage.Build(t, biosRecipe)
	g := bootVM(t, vmrunner.Config{Image: res.Image}) // auto: no EFI system partition, so SeaBIOS
	if g.vm.Info().Firmware != vmrunner.FirmwareBIOS {
		t.Fatalf("preview chose %s firmware for a BIOS image", g.vm.Info().Firmware)
	}
	g.expect(regexp.MustCompile(`kiln: booting oldpc-1\.0\.0`), bootTimeout)
	g.expect(regexp.MustCompile(`kiln: ready name=oldpc version=1\.0\.0 hostname=oldpc-bios\b`), bootTimeout)
	t.Logf("ready line after %.1fs", time.Since(g.start).Seconds())
}

// TestBootHybrid boots one hybrid image under SeaBIOS and under OVMF.
func TestBootHybrid(t *testing.T) {
	res := testimage.Build(t, hybridRecipe)
	for _, fw := range []vmrunner.FirmwareKind{vmrunner.FirmwareBIOS, vmrunner.FirmwareUEFI} {
		t.Run(string(fw), func(t *testing.T) {
			g := bootVM(t, vmrunner.Config{Image: res.Image, Firmware: fw})
			g.expect(regexp.MustCompile(`kiln: ready name=anypc version=1\.0\.0 hostname=anypc-hybrid\b`), bootTimeout)
			t.Logf("%s: ready line after %.1fs", fw, time.Since(g.start).Seconds())
		})
	}
}

// TestBIOSImagesReproducibleAndChecked builds a hybrid image with an ISO twice: the outputs are
// byte-identical, and sgdisk, fdisk and fsck.vfat accept the disk.
func TestBIOSImagesReproducibleAndChecked(t *testing.T) {
	recipe := hybridRecipe + "[outputs]\niso = true\n"
	a, b := testimage.Build(t, recipe), testimage.Build(t, recipe)
	for _, p := range [][2]string{{a.Image, b.Image}, {a.ISO, b.ISO}, {a.Manifest, b.Manifest}} {
		if testimage.SHA256(t, p[0]) != testimage.SHA256(t, p[1]) {
			t.Errorf("%s differs between two builds", filepath.Base(p[0]))
		}
	}
	out := runTool(t, "sgdisk", "-v", a.Image)
	if !strings.Contains(out, "No problems found.") || strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	if out := runTool(t, "fdisk", "-l", a.Image); !strings.Contains(out, "BIOS boot") || !strings.Contains(out, "EFI System") {
		t.Errorf("fdisk -l:\n%s", out)
	}
	esp := filepath.Join(t.TempDir(), "esp.img")
	runTool(t, "dd", "if="+a.Image, "of="+esp, "bs=1M", "skip=1", "count=192", "conv=sparse", "status=none")
	fsck := runTool(t, "fsck.vfat", "-n", esp)
	if strings.Contains(strings.ToLower(fsck), "wrong") || strings.Contains(fsck, "differences") {
		t.Errorf("fsck.vfat -n:\n%s", fsck)
	}
	for _, f := range []string{"::/grub/grub.cfg", "::/grub/grubenv", "::/kiln/anypc-1.0.0/linux", "::/EFI/BOOT/BOOTX64.EFI"} {
		if dir := runTool(t, "mdir", "-/", "-b", "-i", esp, "::"); !strings.Contains(dir, f) {
			t.Errorf("ESP lacks %s:\n%s", f, dir)
		}
	}
}
