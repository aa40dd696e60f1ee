package iso

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

func write(t *testing.T, dir string) (string, *Result) {
	t.Helper()
	out := filepath.Join(dir, "test.iso")
	boot := bytes.Repeat([]byte{0xb0}, 5000)
	efi := bytes.Repeat([]byte{0xef}, 70000)
	res, err := Write(context.Background(), out, []File{
		{Path: "boot/core.img", Data: boot},
		{Path: "EFI/ESP.IMG", Write: func(ctx context.Context, f *os.File) error { _, err := f.Write(efi); return err }},
		{Path: "README.TXT", Data: []byte("hello\n")},
	}, Options{
		VolumeID: "TEST", ModTime: time.Unix(1704067200, 0), BIOSBoot: "BOOT/CORE.IMG", EFIBoot: "EFI/ESP.IMG",
		PatchBIOS: func(lba uint32) ([]byte, error) {
			b := bytes.Clone(boot)
			binary.LittleEndian.PutUint32(b[1000:], lba)
			return b, nil
		},
		MBRCode: func(lba uint32) ([]byte, error) {
			code := make([]byte, 440)
			binary.LittleEndian.PutUint32(code[432:], lba*4+4)
			return code, nil
		},
		DiskSignature: 0x12345678,
		DiskGUID:      "8E1A4F31-0A3C-8D2B-9A44-6B1D2E3F4A5B", ESPGUID: "0F9E8D7C-6B5A-8493-A281-706F5E4D3C2B",
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func TestHybridISO(t *testing.T) {
	out, res := write(t, t.TempDir())
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	at := int(res.BIOSBootLBA) * SectorSize
	if got := binary.LittleEndian.Uint32(b[at+1000:]); got != res.BIOSBootLBA {
		t.Errorf("patched boot image holds LBA %d, want %d", got, res.BIOSBootLBA)
	}
	// The boot information table: PVD block, the image's block and length, the checksum.
	tab := b[at+8:]
	var sum uint32
	for i := 64; i+4 <= 5000; i += 4 {
		sum += binary.LittleEndian.Uint32(b[at+i:])
	}
	if binary.LittleEndian.Uint32(tab) != 16 || binary.LittleEndian.Uint32(tab[4:]) != res.BIOSBootLBA ||
		binary.LittleEndian.Uint32(tab[8:]) != 5000 || binary.LittleEndian.Uint32(tab[12:]) != sum {
		t.Errorf("boot information table % x", tab[:16])
	}
	// Hybrid MBR: a protective entry up to the EFI image, then the active EFI entry over it.
	espStart := uint32(res.EFIBootLBA) * 4
	if binary.LittleEndian.Uint32(b[432:]) != res.BIOSBootLBA*4+4 || b[510] != 0x55 ||
		b[446] != 0 || b[446+4] != 0xee || binary.LittleEndian.Uint32(b[446+8:]) != 1 || binary.LittleEndian.Uint32(b[446+12:]) != espStart-1 ||
		b[462] != 0x80 || b[462+4] != 0xef || binary.LittleEndian.Uint32(b[462+8:]) != espStart {
		t.Errorf("MBR % x", b[432:512])
	}
	if string(b[512:520]) != "EFI PART" || string(b[len(b)-512:len(b)-504]) != "EFI PART" {
		t.Error("no primary GPT header at sector 1 or backup at the last sector")
	}
	if len(b)%SectorSize != 0 || binary.LittleEndian.Uint32(b[16*SectorSize+80:]) != uint32(len(b)/SectorSize) {
		t.Errorf("volume size does not cover the %d-byte image with its padding", len(b))
	}

	report := run(t, "xorriso", "-indev", out, "-report_el_torito", "plain")
	for _, want := range []string{"/BOOT/CORE.IMG", "/EFI/ESP.IMG", "BIOS", "UEFI"} {
		if !strings.Contains(report, want) {
			t.Errorf("xorriso -report_el_torito lacks %s:\n%s", want, report)
		}
	}
	// fdisk reads the GPT (the MBR has a protective entry); sgdisk checks both tables.
	if fd := run(t, "fdisk", "-l", out); !strings.Contains(fd, "Disklabel type: gpt") ||
		!regexp.MustCompile(fmt.Sprintf(`test.iso1 +%d +%d .*EFI System`, espStart, espStart+70000/512)).MatchString(fd) {
		t.Errorf("fdisk -l:\n%s", fd)
	}
	if v := run(t, "sgdisk", "-v", out); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", v)
	}
	sys := run(t, "xorriso", "-indev", out, "-report_system_area", "plain")
	for _, want := range []string{"System area summary: MBR protective-msdos-label", "GPT type GUID      :   1  28732ac11ff8d211ba4b00a0c93ec93b", "GPT partition path :   1  /EFI/ESP.IMG",
		"MBR partition path :   2  /EFI/ESP.IMG"} {
		if !strings.Contains(sys, want) {
			t.Errorf("xorriso -report_system_area lacks %q:\n%s", want, sys)
		}
	}
	if got := run(t, "xorriso", "-osirrox", "on", "-indev", out, "-extract", "/README.TXT", filepath.Join(t.TempDir(), "r")); got == "" {
		t.Error("xorriso read nothing")
	}

	again, _ := write(t, t.TempDir())
	b2, _ := os.ReadFile(again)
	if !bytes.Equal(b, b2) {
		t.Error("two writes differ")
	}
}

func TestBadName(t *testing.T) {
	_, err := Write(context.Background(), filepath.Join(t.TempDir(), "x.iso"), []File{{Path: "kiln-tiny-1.0.0/linux"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "level 1") {
		t.Fatalf("err = %v", err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
