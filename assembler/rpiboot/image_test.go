package rpiboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/testenv"
)

func testParts() []Part {
	return []Part{
		{Size: 40 << 20, Type: TypeFAT32, Label: "RPI-BOOT", Files: []fat.File{
			{Path: AutobootFile, Data: Autoboot{Boot: 2, Try: 3}.Encode()}, {Path: "bootcode.bin", Data: []byte("bootcode")}}},
		{Size: 40 << 20, Type: TypeFAT32, Label: "RPI-A", Files: []fat.File{
			{Path: "config.txt", Data: []byte("kernel=vmlinuz\n")}, {Path: "overlays/x.dtbo", Data: bytes.Repeat([]byte("o"), 5000)}}},
		{Size: 40 << 20, Type: TypeFAT32, Label: "RPI-B"},
		{Type: TypeLinux},
	}
}

func TestWriteImage(t *testing.T) {
	dir := t.TempDir()
	mod := time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)
	img := filepath.Join(dir, "pi.img")
	res, written, err := WriteImage(context.Background(), img, 160<<20, 0x4b494c4e, testParts(), mod, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The block map comes from what was written; on Linux the same as from the file's holes.
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fromWrites, err1 := bmap.FromExtents(f, 4096, written)
	fromHoles, err2 := bmap.Create(f, 4096)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(fromWrites, fromHoles) {
		t.Fatalf("map from writes %+v (%v)\nmap from holes %+v (%v)", fromWrites, err1, fromHoles, err2)
	}
	if len(res) != 4 || res[3].Start != 121<<20 || res[3].Size != 39<<20 {
		t.Fatalf("layout %+v", res)
	}
	// Two builds are byte-identical.
	img2 := filepath.Join(dir, "pi2.img")
	if _, _, err := WriteImage(context.Background(), img2, 160<<20, 0x4b494c4e, testParts(), mod, nil); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(img2)
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Fatal("two builds differ")
	}

	sfdisk := testenv.Tool(t, "sfdisk")
	out, err := exec.Command(sfdisk, "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	for _, want := range []string{"label: dos", "label-id: 0x4b494c4e", "pi.img1 : start=        2048, size=       81920, type=c",
		"pi.img4 : start=      247808, size=       79872, type=83"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, out)
		}
	}
	fsck := testenv.Tool(t, "fsck.vfat")
	mtype := testenv.Tool(t, "mtype")
	for i, p := range res[:3] {
		part := filepath.Join(dir, "p"+strconv.Itoa(p.Number))
		if err := os.WriteFile(part, a[p.Start:p.Start+p.Size], 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(fsck, "-n", part).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat -n partition %d: %v\n%s", p.Number, err, out)
		}
		for _, f := range testParts()[i].Files {
			got, err := exec.Command(mtype, "-i", part, "::"+f.Path).Output()
			if err != nil || !bytes.Equal(got, f.Data) {
				t.Errorf("partition %d: mtype %s: %v, %d bytes, want %d", p.Number, f.Path, err, len(got), len(f.Data))
			}
		}
	}
}

func TestWriteImageErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		size  int64
		parts []Part
	}{
		"none":      {64 << 20, nil},
		"five":      {64 << 20, make([]Part, 5)},
		"unaligned": {64<<20 + 1, []Part{{Type: TypeLinux}}},
		"too big":   {64 << 20, []Part{{Size: 64 << 20, Type: TypeLinux}}},
		"tiny FAT":  {64 << 20, []Part{{Size: 8 << 20, Type: TypeFAT32}}},
	} {
		p := filepath.Join(dir, "x.img")
		if _, _, err := WriteImage(context.Background(), p, tc.size, 1, tc.parts, time.Time{}, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: partial image left", name)
		}
	}
}
