package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/testenv"
)

const MiB = 1 << 20

const (
	diskGUID = "6E0F1C52-3A5B-4C8D-9E7F-102132435465"
	espGUID  = "A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF"
	dataGUID = "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	testenv.Tool(t, name)
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func file(p string, data []byte) fat.File { return fat.File{Path: p, Data: data} }
func dir(p string) fat.File               { return fat.File{Path: p, Dir: true} }

func espEntries() []fat.File {
	deep := "deep"
	for i := range 12 {
		deep += fmt.Sprintf("/directory level %d", i)
	}
	return []fat.File{
		dir("EFI"), dir("EFI/BOOT"), dir("EFI/Linux"), dir("loader"), dir("deep"),
		file("EFI/BOOT/BOOTX64.EFI", randBytes(1, 98765)),
		file("EFI/Linux/kiln-tiny-1.0.0+3.efi", randBytes(2, 3*MiB+5)),
		file("loader/loader.conf", []byte("timeout 0\n")),
		file(deep+"/a file with a long name.txt", []byte("deep\n")),
	}
}

func dataEntries() []fat.File {
	return []fat.File{dir("etc"), file("etc/hostname", []byte("kiln\n")), file("Notes For Me.md", []byte("# notes\n")),
		file("readme.txt", []byte("lower-case 8.3 name\n")), file("Grüße – 日本語.txt", []byte("unicode\n"))}
}

func testLayout(t *testing.T) Layout {
	return Layout{
		Size:     256 * MiB,
		DiskGUID: diskGUID,
		ModTime:  time.Unix(1714000000, 0),
		Partitions: []Partition{
			{Name: "ESP", Type: TypeESP, Size: 64 * MiB, Label: "ESP", GUID: espGUID, FS: FSFAT32, Files: espEntries()},
			{Name: "data", Type: TypeData, Label: "KILN-DATA", GUID: dataGUID, FS: FSFAT32, Files: dataEntries()},
		},
	}
}

func writeImage(t *testing.T, l Layout) (string, *Result) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	res, err := Write(context.Background(), img, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, res
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract copies a partition out to its own sparse file, for tools that take no offset.
func extract(t *testing.T, img string, p PartitionResult) string {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), p.Name+".part")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Truncate(p.Size); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MiB)
	zero := make([]byte, MiB)
	r := io.NewSectionReader(src, p.Start, p.Size)
	for off := int64(0); off < p.Size; off += MiB {
		n, err := io.ReadFull(r, buf)
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func TestImageCheckedByPeers(t *testing.T) {
	l := testLayout(t)
	img, res := writeImage(t, l)

	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found.") || strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	wantParts := []struct {
		typ, guid, name string
		first, last     int64
	}{
		{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)", espGUID, "ESP", 2048, 2048 + 64*2048 - 1},
		{"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 (Microsoft basic data)", dataGUID, "data", 2048 + 64*2048, 256*2048 - 2048 - 1},
	}
	for i, w := range wantParts {
		info := run(t, "sgdisk", "-i", fmt.Sprint(i+1), img)
		for _, s := range []string{
			"Partition GUID code: " + w.typ,
			"Partition unique GUID: " + w.guid,
			fmt.Sprintf("First sector: %d ", w.first),
			fmt.Sprintf("Last sector: %d ", w.last),
			fmt.Sprintf("Partition name: '%s'", w.name),
		} {
			if !strings.Contains(info, s) {
				t.Errorf("sgdisk -i %d lacks %q:\n%s", i+1, s, info)
			}
		}
		p := res.Partitions[i]
		if p.Start != w.first*512 || p.Size != (w.last-w.first+1)*512 {
			t.Errorf("Result partition %d at %d+%d, sgdisk shows sectors %d-%d", i+1, p.Start, p.Size, w.first, w.last)
		}
	}
	if out := run(t, "sgdisk", "-p", img); !strings.Contains(out, "Disk identifier (GUID): "+diskGUID) {
		t.Errorf("sgdisk -p lacks the disk GUID:\n%s", out)
	}

	for i, entries := range [][]fat.File{espEntries(), dataEntries()} {
		p := res.Partitions[i]
		part := extract(t, img, p)
		out := run(t, "fsck.vfat", "-n", "-v", part)
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "differences") || strings.Contains(strings.ToLower(line), "wrong") ||
				strings.Contains(line, "ERROR") || strings.Contains(strings.ToLower(line), "warning") {
				t.Errorf("fsck.vfat on %s: %s", p.Name, line)
			}
		}
		if want := fmt.Sprintf("%d hidden sectors", p.Start/512); !strings.Contains(out, want) {
			t.Errorf("fsck.vfat on %s lacks %q:\n%s", p.Name, want, out)
		}
		// mtools reads the partition in place, at its offset in the image.
		at := fmt.Sprintf("%s@@%d", img, p.Start)
		label := run(t, "mlabel", "-s", "-i", at, "::")
		if want := "Volume label is " + l.Partitions[i].Label; strings.TrimSpace(label) != want {
			t.Errorf("mlabel: %q, want %q", label, want)
		}
		for _, e := range entries {
			if e.Dir {
				continue
			}
			got := run(t, "mcopy", "-n", "-i", at, "::"+e.Path, "-")
			if got != string(e.Data) {
				t.Errorf("%s:%s: %d bytes read back differ from the %d written", p.Name, e.Path, len(got), len(e.Data))
			}
		}
	}
	if res.Partitions[0].Files != 4 || res.Partitions[0].Dirs != 17 || res.Partitions[1].Files != 4 {
		t.Errorf("result counts: %+v", res.Partitions)
	}
}

func TestImageIsSparseAndReproducible(t *testing.T) {
	a, _ := writeImage(t, testLayout(t))
	b, _ := writeImage(t, testLayout(t))
	if used := allocated(t, a); used > 8*MiB {
		t.Errorf("a 256 MiB image with 3 MiB of files allocates %d MiB", used/MiB)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two images from the same layout differ")
	}
	if ver := run(t, "cmp", a, b); ver != "" {
		t.Fatalf("cmp: %s", ver)
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Layout)
		is     error
		msg    string
	}{
		{"partitions do not fit", func(l *Layout) { l.Partitions[0].Size = 300 * MiB }, ErrTooSmall, "past the usable end"},
		{"nothing left for the rest", func(l *Layout) { l.Partitions[0].Size = 254 * MiB }, ErrTooSmall, "no space left"},
		{"file too big for the partition", func(l *Layout) {
			l.Partitions[0].Files = []fat.File{file("big.bin", make([]byte, 65*MiB))}
		}, ErrTooSmall, "make the partition larger"},
		{"partition too small for FAT32", func(l *Layout) { l.Partitions[0].Size = 16 * MiB }, ErrTooSmall, "FAT32 needs at least"},
		{"rest of disk not last", func(l *Layout) { l.Partitions[0].Size = 0 }, nil, "only the last partition"},
		{"missing GUID", func(l *Layout) { l.Partitions[1].GUID = "" }, nil, "is not a GUID"},
		{"duplicate GUID", func(l *Layout) { l.Partitions[1].GUID = espGUID }, nil, "already used"},
		{"unknown type", func(l *Layout) { l.Partitions[1].Type = "swap" }, nil, "not one of esp, data, linux"},
		{"files without filesystem", func(l *Layout) { l.Partitions[1].FS = FSNone }, nil, "without a filesystem"},
		{"bad disk size", func(l *Layout) { l.Size = 100 }, nil, "multiple of 512"},
		{"image too big", func(l *Layout) {
			l.Partitions[1] = Partition{Name: "root-a", Type: TypeLinux, Size: 2 * MiB, GUID: dataGUID, FS: FSImage, Image: make([]byte, 3*MiB)}
		}, ErrTooSmall, "does not fit"},
		{"image without FSImage", func(l *Layout) { l.Partitions[1].Image = []byte{1} }, nil, "an image given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := testLayout(t)
			tc.change(&l)
			img := filepath.Join(t.TempDir(), "disk.img")
			_, err := Write(context.Background(), img, l, nil)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want an error with %q (is %v)", err, tc.msg, tc.is)
			}
			if _, err := os.Stat(img); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed write left %s behind", img)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	img := filepath.Join(t.TempDir(), "disk.img")
	var events int
	_, err := Write(ctx, img, testLayout(t), func(e progress.Event) {
		events++
		cancel() // the user gives up as soon as writing starts
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(img); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled write left %s behind", img)
	}
	if events == 0 {
		t.Error("no progress before the cancel")
	}
}

func TestLinuxPartitionLeftEmpty(t *testing.T) {
	l := testLayout(t)
	l.Partitions[1] = Partition{Name: "root-a", Type: TypeLinux, Size: 32 * MiB, GUID: dataGUID}
	img, res := writeImage(t, l)
	if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found.") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	if out := run(t, "sgdisk", "-i", "2", img); !strings.Contains(out, "0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)") {
		t.Errorf("sgdisk -i 2:\n%s", out)
	}
	if p := res.Partitions[1]; p.Size != 32*MiB || p.Start != 65*MiB {
		t.Errorf("root-a at %d+%d", p.Start, p.Size)
	}
}

// An FSImage partition holds its image at its start, recorded in the written ranges; the rest
// of the partition stays zeros.
func TestImagePartition(t *testing.T) {
	l := testLayout(t)
	data := bytes.Repeat([]byte("erofs!"), 500_000) // 3 MB, not a whole number of blocks
	l.Partitions[1] = Partition{Name: "root-a", Type: TypeLinux, Size: 32 * MiB, GUID: dataGUID, FS: FSImage, Image: data}
	img, res := writeImage(t, l)
	if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found.") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	p := res.Partitions[1]
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, p.Size)
	if _, err := f.ReadAt(got, p.Start); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], make([]byte, int(p.Size)-len(data))) {
		t.Error("the partition does not hold the image followed by zeros")
	}
	if p.Used != int64(len(data)) {
		t.Errorf("used %d, want %d", p.Used, len(data))
	}
	covered := false
	for _, r := range res.Written {
		if r[0] <= p.Start && r[1] >= p.Start+int64(len(data)) {
			covered = true
		}
	}
	if !covered {
		t.Errorf("written ranges %v do not cover the image at %d+%d", res.Written, p.Start, len(data))
	}
}

// The block map comes from what Write wrote, not from the host filesystem's holes (Windows has
// none to report); on Linux both give the same map.
func TestWrittenRangesAreTheImagesData(t *testing.T) {
	l := testLayout(t)
	l.BIOS = &BIOSBoot{Code: bytes.Repeat([]byte{0xeb}, 440), Core: bytes.Repeat([]byte("core"), 40000), Name: "BIOS boot", GUID: biosGUID}
	img, res := writeImage(t, l)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fromWrites, err := bmap.FromExtents(f, 4096, res.Written)
	if err != nil {
		t.Fatal(err)
	}
	fromHoles, err := bmap.Create(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromWrites, fromHoles) {
		t.Fatalf("map from writes %+v\nmap from holes %+v", fromWrites.Ranges, fromHoles.Ranges)
	}
}
