package customise

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/recipe"
)

// FuzzLocate: a hostile partition table never crashes Locate, and what it finds is a sane range.
func FuzzLocate(f *testing.F) {
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	mbr[446+4] = 0x0c
	binary.LittleEndian.PutUint32(mbr[446+8:], 8192)
	binary.LittleEndian.PutUint32(mbr[446+12:], 81920)
	f.Add(mbr)
	gpt := make([]byte, 34*512)
	gpt[510], gpt[511] = 0x55, 0xaa
	gpt[446+4] = 0xee
	copy(gpt[512:], "EFI PART")
	binary.LittleEndian.PutUint64(gpt[512+72:], 2)
	binary.LittleEndian.PutUint32(gpt[512+80:], 128)
	binary.LittleEndian.PutUint32(gpt[512+84:], 128)
	copy(gpt[1024:], gptFAT[0][:])
	binary.LittleEndian.PutUint64(gpt[1024+32:], 2048)
	binary.LittleEndian.PutUint64(gpt[1024+40:], 83967)
	f.Add(gpt)
	f.Fuzz(func(t *testing.T, head []byte) {
		if len(head) > ProbeSize {
			head = head[:ProbeSize]
		}
		p, err := Locate(head)
		if err == nil && (p.Offset <= 0 || p.Size <= 0 || p.Number < 1 || p.Offset+p.Size < p.Offset) {
			t.Fatalf("insane partition %+v", p)
		}
	})
}

// FAT kinds of tinyFAT.
const (
	kind32 uint8 = iota
	kind16
	kind12
)

// tinyFAT lays out the smallest FAT32 volume (65525 one-sector clusters), a small FAT16 one (8000
// clusters) or a FAT12 one (4000 clusters), by kind modulo 3: the boot sector, the first bytes of the
// FAT (copied to both FATs) and of the root directory come from the fuzzer's input; the rest is
// zero. It returns the volume as a sparse file.
func tinyFAT(t *testing.T, kind uint8, boot, fat, root []byte) (*os.File, int64) {
	reserved, fatSectors, rootSectors, clusters := int64(32), int64(512), int64(0), int64(65525)
	switch kind % 3 {
	case kind16:
		reserved, fatSectors, rootSectors, clusters = 4, 32, 32, 8000
	case kind12:
		reserved, fatSectors, rootSectors, clusters = 1, 12, 32, 4000
	}
	size := (reserved + 2*fatSectors + rootSectors + clusters) * 512
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(size)
	f.WriteAt(boot[:min(len(boot), 512)], 0)
	if kind%3 == kind32 { // an FSInfo sector, as mkfs.fat writes it
		fsi := make([]byte, 512)
		copy(fsi, "RRaA")
		copy(fsi[484:], "rrAa")
		binary.LittleEndian.PutUint32(fsi[488:], 0xffffffff)
		binary.LittleEndian.PutUint32(fsi[492:], 0xffffffff)
		fsi[510], fsi[511] = 0x55, 0xaa
		f.WriteAt(fsi, 512)
	}
	fat = fat[:min(int64(len(fat)), fatSectors*512)]
	f.WriteAt(fat, reserved*512)
	f.WriteAt(fat, (reserved+fatSectors)*512)
	f.WriteAt(root[:min(len(root), 512)], (reserved+2*fatSectors)*512)
	return f, size
}

func seedBoot() []byte {
	b := make([]byte, 512)
	b[0], b[1], b[2] = 0xeb, 0x58, 0x90
	copy(b[3:], "mkfs.fat")
	binary.LittleEndian.PutUint16(b[11:], 512)
	b[13] = 1
	binary.LittleEndian.PutUint16(b[14:], 32)
	b[16] = 2
	b[21] = 0xf8
	binary.LittleEndian.PutUint32(b[32:], 32+2*512+65525)
	binary.LittleEndian.PutUint32(b[36:], 512)
	binary.LittleEndian.PutUint32(b[44:], 2)
	binary.LittleEndian.PutUint16(b[48:], 1)
	b[66] = 0x29
	copy(b[71:], "CIDATA     FAT32   ")
	b[510], b[511] = 0x55, 0xaa
	return b
}

func seedBoot16() []byte {
	b := seedBoot()
	clear(b[11:90])
	binary.LittleEndian.PutUint16(b[11:], 512)
	b[13] = 1
	binary.LittleEndian.PutUint16(b[14:], 4)
	b[16] = 2
	binary.LittleEndian.PutUint16(b[17:], 512)
	binary.LittleEndian.PutUint16(b[19:], 4+2*32+32+8000)
	b[21] = 0xf8
	binary.LittleEndian.PutUint16(b[22:], 32)
	b[38] = 0x29
	copy(b[43:], "CIDATA     FAT16   ")
	return b
}

func seedBoot12() []byte {
	b := seedBoot16()
	binary.LittleEndian.PutUint16(b[14:], 1)
	binary.LittleEndian.PutUint16(b[19:], 1+2*12+32+4000)
	binary.LittleEndian.PutUint16(b[22:], 12)
	copy(b[43:], "CIDATA     FAT12   ")
	return b
}

// FuzzApply: a hostile boot partition is refused or customised, never a crash, a hang or an
// allocation beyond its size.
func FuzzApply(f *testing.F) {
	fat := make([]byte, 16)
	binary.LittleEndian.PutUint32(fat[0:], 0x0ffffff8)
	binary.LittleEndian.PutUint32(fat[4:], 0x0fffffff)
	binary.LittleEndian.PutUint32(fat[8:], 0x0fffffff) // root directory: one cluster
	root := make([]byte, 64)
	copy(root, "USER-D~1   ")
	root[11] = 0x20
	binary.LittleEndian.PutUint16(root[26:], 3)
	binary.LittleEndian.PutUint32(root[28:], 12)
	binary.LittleEndian.PutUint32(fat[12:], 0x0fffffff)
	f.Add(kind32, seedBoot(), fat, root)
	loop := append([]byte{}, fat...)
	binary.LittleEndian.PutUint32(loop[12:], 3) // cluster 3 points to itself
	f.Add(kind32, seedBoot(), loop, root)
	fat16 := []byte{0xf8, 0xff, 0xff, 0xff, 0xff, 0xff}
	root16 := append([]byte{}, root...)
	binary.LittleEndian.PutUint16(root16[26:], 2)
	f.Add(kind16, seedBoot16(), fat16, root16)
	f.Add(kind16, seedBoot16(), []byte{0xf8, 0xff, 0xff, 0xff, 0x02, 0x00}, root16) // cluster 2 points to itself
	// FAT12: entries 0 and 1, then a file in clusters 2-3 (entries 2 and 3 share bytes 3-5).
	fat12 := []byte{0xf8, 0xff, 0xff, 0x03, 0xf0, 0xff}
	f.Add(kind12, seedBoot12(), fat12, root16)
	f.Add(kind12, seedBoot12(), []byte{0xf8, 0xff, 0xff, 0x03, 0x20, 0x00}, root16) // 3 points back to 2
	cmdline := append([]byte{}, root...)
	copy(cmdline, "CMDLINE TXT")
	f.Add(kind32, seedBoot(), fat, cmdline)
	c := &Customiser{s: Settings{Hostname: "fuzz", Users: []recipe.User{{Name: "u", PasswordHash: "!"}}}}
	// Declared systemd: cmdline.txt is read from the (hostile) partition and rewritten.
	sd := &Customiser{s: Settings{Hostname: "fuzz", Format: FormatSystemd}}
	f.Fuzz(func(t *testing.T, kind uint8, boot, fat, root []byte) {
		vol, size := tinyFAT(t, kind, boot, fat, root)
		_, _, _ = c.Apply(context.Background(), vol, size)
		vol, size = tinyFAT(t, kind, boot, fat, root)
		_, _, _ = sd.Apply(context.Background(), vol, size)
	})
}

// FuzzMerge: any user-data is merged or refused, and a merged document is a mapping again.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("#cloud-config\nhostname: x\nusers:\n  - name: b\nruncmd: [[ls]]\n"))
	f.Add([]byte("#cloud-config\na: &x [1]\nb: *x\n"))
	f.Add([]byte("#cloud-config\n- list\n"))
	kiln, err := Render(Settings{Hostname: "h", Users: []recipe.User{{Name: "a", PasswordHash: "!"}}}, FormatCloudInit)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, user []byte) {
		out, err := Merge(kiln.UserData, user)
		if err != nil {
			return
		}
		if _, err := parseUserData(out); err != nil {
			t.Fatalf("merged user-data does not parse: %v\n%s", err, out)
		}
	})
}

// TestLoopingFATRefused: the fuzz seeds themselves — minimal FAT32, FAT16 and FAT12 volumes are
// customised, the same volumes with a cluster chain looping back on itself are refused with a note
// (the file system library would follow such a chain for ever).
func TestLoopingFATRefused(t *testing.T) {
	c := &Customiser{s: Settings{Hostname: "fuzz", Users: []recipe.User{{Name: "u", PasswordHash: "!"}}}}
	fat32 := make([]byte, 16)
	binary.LittleEndian.PutUint32(fat32[0:], 0x0ffffff8)
	binary.LittleEndian.PutUint32(fat32[4:], 0x0fffffff)
	binary.LittleEndian.PutUint32(fat32[8:], 0x0fffffff)
	loop32 := append([]byte{}, fat32...)
	binary.LittleEndian.PutUint32(loop32[12:], 3)
	for _, tc := range []struct {
		name    string
		kind    uint8
		boot    []byte
		fat     []byte
		changed bool
	}{
		{"fat32", kind32, seedBoot(), fat32, true},
		{"fat32-loop", kind32, seedBoot(), loop32, false},
		{"fat16", kind16, seedBoot16(), []byte{0xf8, 0xff, 0xff, 0xff}, true},
		{"fat16-loop", kind16, seedBoot16(), []byte{0xf8, 0xff, 0xff, 0xff, 0x02, 0x00}, false},
		{"fat12", kind12, seedBoot12(), []byte{0xf8, 0xff, 0xff}, true},
		{"fat12-loop", kind12, seedBoot12(), []byte{0xf8, 0xff, 0xff, 0x03, 0x20, 0x00}, false},
		{"fat12-loop-odd", kind12, seedBoot12(), []byte{0xf8, 0xff, 0xff, 0x03, 0x30, 0x00}, false}, // 3 points to itself
	} {
		vol, size := tinyFAT(t, tc.kind, tc.boot, tc.fat, nil)
		changed, note, err := c.Apply(context.Background(), vol, size)
		if err != nil || changed != tc.changed || (!changed && !strings.Contains(note, "loop")) {
			t.Errorf("%s: changed %v, note %q, error %v", tc.name, changed, note, err)
		}
	}
}
