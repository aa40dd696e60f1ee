package assembler_test

import (
	"regexp"
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
