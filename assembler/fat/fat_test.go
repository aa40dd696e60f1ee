package fat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

const MiB = 1 << 20

// needTool skips when a peer tool is missing, except under CI, where it must be installed.
func needTool(t *testing.T, name string) {
	t.Helper()
	testenv.Tool(t, name)
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sampleTree mixes what a boot partition and a user's data hold: 8.3 names in both cases, long and
// Unicode names, names needing numeric tails, empty files and directories, sizes around cluster
// boundaries, a deep directory chain, a directory spanning many clusters and a large file.
func sampleTree() []File {
	files := []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: randBytes(1, 123457)},
		{Path: "EFI/Linux/kiln-tiny-1.0.0+3.efi", Data: randBytes(2, 5*MiB+17)},
		{Path: "loader/loader.conf", Data: []byte("timeout 0\ndefault kiln-tiny-*\n")},
		{Path: "loader/entries", Dir: true},
		{Path: "readme.txt", Data: []byte("lower case 8.3\n")},
		{Path: "ReadMe.md", Data: []byte("mixed case\n")},
		{Path: ".hidden", Data: []byte("dot file\n")},
		{Path: "archive.tar.gz", Data: randBytes(3, 4096)},
		{Path: "a name with spaces and more than thirteen characters.text", Data: []byte("lfn\n")},
		{Path: "a name with spaces and more than thirteen characters 2.text", Data: []byte("lfn 2\n")},
		{Path: "ünïcödé – 日本語.txt", Data: []byte("unicode\n")},
		{Path: "empty", Data: nil},
		{Path: "empty dir", Dir: true},
		{Path: strings.Repeat("x", 255), Data: []byte("longest name\n")},
	}
	for i, n := range []int{1, 511, 512, 513, 4095, 4096, 4097, 65536} {
		files = append(files, File{Path: fmt.Sprintf("sizes/size-%d.bin", n), Data: randBytes(uint64(10+i), n)})
	}
	deep := "deep"
	for i := range 30 {
		deep += fmt.Sprintf("/level %02d", i)
	}
	files = append(files, File{Path: deep + "/bottom.txt", Data: []byte("at the bottom\n")})
	for i := range 700 {
		files = append(files, File{Path: fmt.Sprintf("many/file number %04d.dat", i), Data: []byte(fmt.Sprint(i))})
	}
	return files
}

func writeVolume(t *testing.T, size int64, files []File, opt Options) (string, *Info) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	info, err := Write(context.Background(), f, 0, size, files, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, info
}

var fsckSummary = regexp.MustCompile(`^\S+: (\d+) files, (\d+)/(\d+) clusters$`)

// fsckClean runs fsck.vfat read-only with a verification pass and fails on any finding. entries is
// what fsck counts as files: every file and directory below the root, and the volume label.
func fsckClean(t *testing.T, img string, entries int, info *Info) {
	t.Helper()
	needTool(t, "fsck.vfat")
	out, err := exec.Command("fsck.vfat", "-n", "-V", img).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.vfat -n -V: %v\n%s", err, out)
	}
	var summary []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.HasPrefix(line, "fsck.fat "), line == "Starting check/repair pass.", line == "Starting verification pass.":
		case fsckSummary.MatchString(line):
			summary = fsckSummary.FindStringSubmatch(line)
		default:
			t.Errorf("fsck.vfat reports: %s", line)
		}
	}
	if summary == nil {
		t.Fatalf("fsck.vfat printed no summary:\n%s", out)
	}
	if want := fmt.Sprint(entries); summary[1] != want {
		t.Errorf("fsck.vfat counts %s files and directories, want %s", summary[1], want)
	}
	if info != nil && (summary[2] != fmt.Sprint(info.UsedClusters) || summary[3] != fmt.Sprint(info.Clusters)) {
		t.Errorf("fsck.vfat: %s/%s clusters, Write reported %d/%d", summary[2], summary[3], info.UsedClusters, info.Clusters)
	}
}

// readBack copies the whole volume out with mtools and compares it with files.
func readBack(t *testing.T, img string, files []File) {
	t.Helper()
	needTool(t, "mcopy")
	dir := t.TempDir()
	cmd := exec.Command("mcopy", "-s", "-n", "-i", img, "::*", dir+"/")
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy -s: %v\n%s", err, out)
	}
	compareDir(t, dir, files)
}

// compareDir checks that dir holds exactly files, byte for byte (and the parents they imply).
func compareDir(t *testing.T, dir string, files []File) {
	t.Helper()
	want := map[string]File{}
	for _, f := range files {
		want[f.Path] = f
		for p := filepath.Dir(f.Path); p != "."; p = filepath.Dir(p) {
			if _, ok := want[p]; !ok {
				want[p] = File{Path: p, Dir: true}
			}
		}
	}
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, ok := want[rel]
		switch {
		case !ok:
			t.Errorf("unexpected %s on the volume", rel)
		case w.Dir != d.IsDir():
			t.Errorf("%s: directory %v, want %v", rel, d.IsDir(), w.Dir)
		case !w.Dir:
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, w.Data) {
				t.Errorf("%s: %d bytes read back differ from the %d written", rel, len(got), len(w.Data))
			}
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("read back %d files and directories, want %d", seen, len(want))
	}
}

func countEntries(files []File) int {
	all := map[string]bool{}
	for _, f := range files {
		for p := f.Path; p != "."; p = filepath.Dir(p) {
			all[p] = true
		}
	}
	return len(all)
}

func TestVolumeCheckedByFsckAndMtools(t *testing.T) {
	files := sampleTree()
	stamp := time.Date(2024, 5, 17, 13, 45, 31, 0, time.UTC)
	img, info := writeVolume(t, 64*MiB, files, Options{Label: "Kiln-Data", VolumeID: 0xC0FFEE42, ModTime: stamp})
	fsckClean(t, img, countEntries(files)+1, info)
	readBack(t, img, files)

	needTool(t, "mlabel")
	out, err := exec.Command("mlabel", "-s", "-i", img, "::").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Volume label is KILN-DATA" {
		t.Errorf("mlabel -s: %v: %q", err, out)
	}
	// mtools shows each entry's short name, size, date and long name.
	out, err = exec.Command("mdir", "-i", img, "::").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Volume Serial Number is C0FF-EE42",
		"readme   txt        15 2024-05-17  13:45",
		"README   MD         11 2024-05-17  13:45  ReadMe.md",
		"ARCHIV~1 GZ       4096 2024-05-17  13:45  archive.tar.gz",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("mdir lacks %q:\n%s", want, out)
		}
	}
	if _, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command("blkid", "-p", "-o", "export", img).CombinedOutput()
		if err != nil {
			t.Fatalf("blkid -p: %v\n%s", err, out)
		}
		for _, want := range []string{"LABEL=KILN-DATA", "UUID=C0FF-EE42", "TYPE=vfat", "VERSION=FAT32"} {
			if !strings.Contains(string(out), want+"\n") {
				t.Errorf("blkid lacks %s:\n%s", want, out)
			}
		}
	}
	if info.Files != 721 || info.Dirs != 39 {
		t.Errorf("Info counts %d files, %d directories", info.Files, info.Dirs)
	}
}

func TestVolumeSizes(t *testing.T) {
	files := []File{{Path: "EFI/BOOT/BOOTX64.EFI", Data: randBytes(7, 70000)}, {Path: "x/y/z.txt", Data: []byte("z")}}
	for _, size := range []int64{33 * MiB, 300 * MiB, 1100 * MiB} {
		t.Run(fmt.Sprintf("%dMiB", size/MiB), func(t *testing.T) {
			img, info := writeVolume(t, size, files, Options{HiddenSectors: 2048})
			fsckClean(t, img, 6, info)
			readBack(t, img, files)
			if used := allocated(t, img); used > 4*MiB {
				t.Errorf("%d MiB volume allocates %d KiB on disk: the free space was written", size/MiB, used>>10)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	files := sampleTree()
	opt := Options{Label: "ESP", VolumeID: 1, ModTime: time.Unix(1700000000, 0)}
	a, _ := writeVolume(t, 48*MiB, files, opt)
	// The same files in another order make the same volume.
	rev := make([]File, len(files))
	for i, f := range files {
		rev[len(files)-1-i] = f
	}
	b, _ := writeVolume(t, 48*MiB, rev, opt)
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two volumes from the same files differ")
	}
}

func TestWriteErrors(t *testing.T) {
	big := []File{{Path: "big.bin", Data: make([]byte, 40*MiB)}}
	tests := []struct {
		name  string
		size  int64
		files []File
		opt   Options
		is    error
		msg   string
	}{
		{"too small for FAT32", 16 * MiB, nil, Options{}, ErrTooSmall, "FAT32 needs at least 65525"},
		{"files do not fit", 34 * MiB, big, Options{}, ErrNoSpace, "make the partition larger"},
		{"names differ only in case", 34 * MiB, []File{{Path: "a/Boot"}, {Path: "a/BOOT"}}, Options{}, nil, "differ only in case"},
		{"file used as a directory", 34 * MiB, []File{{Path: "a"}, {Path: "a/b"}}, Options{}, nil, "a is a file"},
		{"listed twice", 34 * MiB, []File{{Path: "a"}, {Path: "a"}}, Options{}, nil, "listed twice"},
		{"bad character", 34 * MiB, []File{{Path: "what?"}}, Options{}, nil, `contains '?'`},
		{"unclean path", 34 * MiB, []File{{Path: "a/../b"}}, Options{}, nil, "not a clean relative path"},
		{"label too long", 34 * MiB, nil, Options{Label: "TWELVE CHARS"}, nil, "longer than 11"},
		{"label characters", 34 * MiB, nil, Options{Label: "DATA:1"}, nil, "volume label"},
		{"size not in sectors", 34*MiB + 1, nil, Options{}, nil, "multiple of 512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "v.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = Write(context.Background(), f, 0, tc.size, tc.files, tc.opt, nil)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want an error with %q (is %v)", err, tc.msg, tc.is)
			}
			if st, _ := f.Stat(); st.Size() != 0 {
				t.Errorf("a rejected volume wrote %d bytes", st.Size())
			}
		})
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := os.Create(filepath.Join(t.TempDir(), "v.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = Write(ctx, f, 0, 64*MiB, sampleTree(), Options{}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestLargeDirectory(t *testing.T) {
	var files []File
	for i := range 10000 {
		files = append(files, File{Path: fmt.Sprintf("flat/A Long File Name number %05d.txt", i), Data: []byte(fmt.Sprint(i))})
	}
	img, info := writeVolume(t, 64*MiB, files, Options{})
	fsckClean(t, img, len(files)+1, info)
	readBack(t, img, files)

	// 22,000 names of three entries each pass FAT's 65,536 entries per directory.
	for i := 10000; i < 22000; i++ {
		files = append(files, File{Path: fmt.Sprintf("flat/A Long File Name number %05d.txt", i)})
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "v.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Write(context.Background(), f, 0, 64*MiB, files, Options{}, nil); err == nil ||
		!strings.Contains(err.Error(), "FAT allows 65536: spread the files over subdirectories") {
		t.Fatalf("got %v", err)
	}
}
