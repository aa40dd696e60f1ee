package customise

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
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

// tinyFAT32 lays out the smallest FAT32 volume (65525 one-sector clusters): the boot sector, the
// first bytes of the FAT (copied to both FATs) and the root directory's first cluster come from the
// fuzzer's input; the rest is zero. It returns the volume as a sparse file.
func tinyFAT32(t *testing.T, boot, fat, root []byte) (*os.File, int64) {
	const (
		reserved, fatSectors, clusters = 32, 512, 65525
		size                           = (reserved + 2*fatSectors + clusters) * 512
	)
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(size)
	f.WriteAt(boot[:min(len(boot), 512)], 0)
	fat = fat[:min(len(fat), fatSectors*512)]
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
	f.Add(seedBoot(), fat, root)
	loop := append([]byte{}, fat...)
	binary.LittleEndian.PutUint32(loop[12:], 3) // cluster 3 points to itself
	f.Add(seedBoot(), loop, root)
	c := &Customiser{s: Settings{Hostname: "fuzz", Users: []recipe.User{{Name: "u", PasswordHash: "!"}}}}
	f.Fuzz(func(t *testing.T, boot, fat, root []byte) {
		vol, size := tinyFAT32(t, boot, fat, root)
		_, _, _ = c.Apply(context.Background(), vol, size)
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
