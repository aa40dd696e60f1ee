package disk

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

const biosGUID = "5C4B3A29-1807-4F6E-9D8C-7B6A59483726"

// A BIOS boot partition in the gap before 1 MiB: peers accept the table, the other partitions keep
// their places and numbers, and the boot code and core image are where the BIOS and GRUB read them.
func TestBIOSBootPartition(t *testing.T) {
	l := testLayout(t)
	code := bytes.Repeat([]byte{0xeb}, 440)
	core := bytes.Repeat([]byte("core"), 40000)
	l.BIOS = &BIOSBoot{Code: code, Core: core, Name: "BIOS boot", GUID: biosGUID}
	img, res := writeImage(t, l)

	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found.") || strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	info := run(t, "sgdisk", "-i", "3", img)
	for _, s := range []string{"Partition GUID code: 21686148-6449-6E6F-744E-656564454649 (BIOS boot partition)",
		"Partition unique GUID: " + biosGUID, "First sector: 40 ", "Last sector: 2047 "} {
		if !strings.Contains(info, s) {
			t.Errorf("sgdisk -i 3 lacks %q:\n%s", s, info)
		}
	}
	if !strings.Contains(run(t, "sgdisk", "-i", "1", img), "First sector: 2048 ") {
		t.Error("the ESP moved")
	}
	if out := run(t, "fdisk", "-l", img); !strings.Contains(out, "BIOS boot") || !strings.Contains(out, "Disklabel type: gpt") {
		t.Errorf("fdisk -l:\n%s", out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:440], code) || b[446] != 0 || b[450] != 0xee || b[510] != 0x55 {
		t.Errorf("MBR: code or protective entry wrong: % x", b[440:512])
	}
	if !bytes.Equal(b[40*512:40*512+len(core)], core) {
		t.Error("core image not at sector 40")
	}
	if p := res.BIOSBoot; p == nil || p.Index != 3 || p.Start != 40*512 || p.Size != BIOSBootSize {
		t.Errorf("result: %+v", p)
	}
}

// A BIOS-only disk marks the protective entry active, which sgdisk names as the BIOS workaround.
func TestBIOSBootActive(t *testing.T) {
	l := testLayout(t)
	l.BIOS = &BIOSBoot{Code: []byte{0xeb}, Name: "BIOS boot", GUID: biosGUID, Active: true}
	img, _ := writeImage(t, l)
	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found.") || !strings.Contains(out, "required to boot from a GPT disk on some BIOS-based") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if b[446] != 0x80 {
		t.Errorf("protective entry not active: %#x", b[446])
	}
}

func TestBIOSBootErrors(t *testing.T) {
	for name, b := range map[string]BIOSBoot{
		"code too long": {Code: make([]byte, 441), GUID: biosGUID},
		"core too big":  {Core: make([]byte, BIOSBootSize+1), GUID: biosGUID},
		"no GUID":       {},
		"same GUID":     {GUID: espGUID},
	} {
		l := testLayout(t)
		l.BIOS = &b
		if _, err := plan(l); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Log(fmt.Sprintf("%s: %v", name, err))
		}
	}
}
