package app

import (
	"os"
	"path/filepath"
	"testing"

	"fyne.io/fyne/v2/test"
)

// mbrImage writes a 1 MiB disk whose MBR holds one partition of each given type.
func mbrImage(t *testing.T, name string, types ...byte) string {
	t.Helper()
	disk := make([]byte, 1<<20)
	for i, typ := range types {
		e := disk[446+16*i:]
		e[4] = typ
		start, size := uint32(64+i*512), uint32(512)
		for b := range 4 {
			e[8+b], e[12+b] = byte(start>>(8*b)), byte(size>>(8*b))
		}
	}
	disk[510], disk[511] = 0x55, 0xaa
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The Preview screen picks the firmware an image is made for, as kiln preview does: SeaBIOS for a
// BIOS-only image, UEFI for a hybrid one, which the user can still boot with BIOS.
func TestPreviewPicksFirmwareFromImage(t *testing.T) {
	a, _, _, p, _ := newTestApp(t)
	biosOnly := mbrImage(t, "bios.img", 0x83)
	hybrid := mbrImage(t, "hybrid.img", 0xef, 0x83)

	a.preview.setImage(biosOnly)
	waitFor(t, func() bool { return a.preview.firmware.Selected == fwBIOS })
	test.Tap(a.preview.startBtn)
	settle(t, a)
	if len(p.Started) != 1 || p.Started[0].Firmware != "bios" || p.Started[0].Image != biosOnly {
		t.Fatalf("BIOS-only image started with %+v", p.Started)
	}
	test.Tap(a.preview.stopBtn)
	waitFor(t, func() bool { return a.preview.running() == nil && a.preview.startBtn.Disabled() == false })

	a.preview.setImage(hybrid)
	waitFor(t, func() bool { return a.preview.firmware.Selected == fwUEFI })
	test.Tap(a.preview.startBtn)
	settle(t, a)
	if len(p.Started) != 2 || p.Started[1].Firmware != "uefi" {
		t.Fatalf("hybrid image started with %+v", p.Started)
	}
	test.Tap(a.preview.stopBtn)
	waitFor(t, func() bool { return a.preview.running() == nil && a.preview.startBtn.Disabled() == false })

	a.preview.firmware.SetSelected(fwBIOS) // the user's choice for the hybrid image
	test.Tap(a.preview.startBtn)
	settle(t, a)
	if len(p.Started) != 3 || p.Started[2].Firmware != "bios" {
		t.Fatalf("hybrid image with BIOS chosen started with %+v", p.Started)
	}
	test.Tap(a.preview.stopBtn)
	waitFor(t, func() bool { return a.preview.running() == nil })
}
