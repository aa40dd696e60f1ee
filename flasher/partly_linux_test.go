package flasher

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/bmap"
)

// zeroDevice reports whether the first n bytes of dev are all zero.
func zeroDevice(t *testing.T, dev string, n int) bool {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// assertPartlyWritten checks that a flash that failed mid-write says the drive is now partly
// overwritten, and that it was.
func assertPartlyWritten(t *testing.T, dev string, res []Result, err error, cause error) {
	t.Helper()
	if !errors.Is(err, ErrPartlyWritten) || !errors.Is(err, cause) {
		t.Fatalf("want ErrPartlyWritten and %v, got %v", cause, err)
	}
	if !strings.Contains(err.Error(), dev+" is now partly overwritten and will not boot; flash it again") {
		t.Fatalf("the error does not tell the user the drive is partly overwritten: %v", err)
	}
	if ErrorCode(err) != "incomplete" || res[0].Verified || res[0].Written == 0 {
		t.Fatalf("code %q, result %+v", ErrorCode(err), res[0])
	}
	if zeroDevice(t, dev, 16<<20) {
		t.Fatal("nothing reached the drive: it is not partly written")
	}
}

func TestCorruptImageMidWriteSaysPartlyWritten(t *testing.T) {
	needRoot(t, "xz")
	dir := t.TempDir()
	img := testImage(t, dir, 12<<20)

	t.Run("compressed data", func(t *testing.T) {
		xzPath := filepath.Join(dir, "data.img.xz")
		run(t, "sh", "-c", "xz -c -T2 --block-size=1MiB "+img+" > "+xzPath)
		b, _ := os.ReadFile(xzPath)
		b[len(b)*3/4] ^= 0xff
		os.WriteFile(xzPath, b, 0o644)
		dev := loopDevice(t, 16<<20)
		res, err := Flash(context.Background(), xzPath, []string{dev}, Options{Decoder: "go"})
		assertPartlyWritten(t, dev, res, err, source.ErrFormat)
	})

	t.Run("block map checksum", func(t *testing.T) {
		f, _ := os.Open(img)
		m, err := bmap.Create(f, 4096)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Split the map into 1 MiB ranges and spoil the checksum of one at 9 MiB.
		m.Ranges = nil
		for first := int64(0); first < 12<<8; first += 256 {
			m.Ranges = append(m.Ranges, bmap.Range{First: first, Last: first + 255})
		}
		data, _ := os.ReadFile(img)
		for i := range m.Ranges {
			off, n := m.Bounds(m.Ranges[i])
			h, _ := m.NewHash()
			h.Write(data[off : off+n])
			m.Ranges[i].Checksum = string(hexSum(h.Sum(nil)))
		}
		m.Ranges[9].Checksum = strings.Repeat("0", 64)
		out, _ := m.Marshal()
		bm := filepath.Join(dir, "spoilt.bmap")
		os.WriteFile(bm, out, 0o644)
		for _, file := range []string{img, compress(t, img, "gzip")} {
			dev := loopDevice(t, 16<<20)
			res, err := Flash(context.Background(), file, []string{dev}, Options{Bmap: bm, Decoder: "go"})
			assertPartlyWritten(t, dev, res, err, ErrSource)
			if !strings.Contains(err.Error(), "block map") {
				t.Fatalf("%s: the error does not name the block map: %v", file, err)
			}
		}
	})
}

func hexSum(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

// compress writes file compressed with program (gzip, xz, …) beside it and returns its path.
func compress(t *testing.T, file, program string) string {
	t.Helper()
	ext := map[string]string{"gzip": ".gz", "xz": ".xz", "zstd": ".zst"}[program]
	run(t, "sh", "-c", program+" -c "+file+" > "+file+ext)
	return file + ext
}

// TestGzipShorterThanItsBlockMap: a block map made for a larger image (its ranges all inside the
// data the .gz holds) must not let a flash report success.
func TestGzipShorterThanItsBlockMap(t *testing.T) {
	needRoot(t, "gzip")
	dir := t.TempDir()
	img := testImage(t, dir, 6<<20)
	// The map of the same data grown to 10 MiB: the last 4 MiB are a hole, so unmapped.
	big := filepath.Join(dir, "big.img")
	run(t, "cp", img, big)
	os.Truncate(big, 10<<20)
	f, _ := os.Open(big)
	m, err := bmap.Create(f, 4096)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, n := m.Bounds(m.Ranges[len(m.Ranges)-1]); n == 0 || m.ImageSize != 10<<20 {
		t.Fatalf("unexpected map %+v", m)
	}
	out, _ := m.Marshal()
	gz := compress(t, img, "gzip")
	os.WriteFile(gz+".bmap", out, 0o644)
	dev := loopDevice(t, 16<<20)
	for _, dec := range []string{"go", "exec"} {
		res, err := Flash(context.Background(), gz, []string{dev}, Options{Decoder: dec})
		if err == nil || res[0].Verified {
			t.Fatalf("%s: a .gz shorter than its block map flashed without error", dec)
		}
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "block map") {
			t.Fatalf("%s: want ErrSource naming the block map, got %v", dec, err)
		}
	}
}

// TestTruncatedGzipSaysTruncatedDownload: a .gz cut off before its trailer is reported as a
// truncated download — before anything is written when its last bytes happen to claim more than
// the drive holds, mid-write otherwise — never as a drive that is too small.
func TestTruncatedGzipSaysTruncatedDownload(t *testing.T) {
	needRoot(t, "gzip", "pigz")
	dir := t.TempDir()
	gz := compress(t, testImage(t, dir, 8<<20), "gzip")
	full, _ := os.ReadFile(gz)
	const drive = 16 << 20
	// cut returns the file cut at the last point before its trailer where the 4 bytes that end it,
	// read as gzip's size field, compare with the drive's size as wanted.
	cut := func(name string, large bool) string {
		for end := len(full) - 8; end > len(full)/2; end-- {
			if isize := binary.LittleEndian.Uint32(full[end-4 : end]); (isize > drive) == large {
				p := filepath.Join(dir, name)
				os.WriteFile(p, full[:end], 0o644)
				return p
			}
		}
		t.Fatal("no cut point")
		return ""
	}
	for _, dec := range []string{"go", "pigz"} {
		t.Run(dec, func(t *testing.T) {
			dev := loopDevice(t, drive)
			_, err := Flash(context.Background(), cut("large.img.gz", true), []string{dev}, Options{Decoder: dec})
			if errors.Is(err, ErrTooSmall) || !errors.Is(err, source.ErrTruncated) || !strings.Contains(err.Error(), "truncated download") {
				t.Fatalf("want a truncated download, got %v", err)
			}
			if !zeroDevice(t, dev, drive) {
				t.Fatal("the drive was written although the image was known to be cut off")
			}
			res, err := Flash(context.Background(), cut("small.img.gz", false), []string{dev}, Options{Decoder: dec})
			if errors.Is(err, ErrTooSmall) || !strings.Contains(err.Error(), "truncated download") {
				t.Fatalf("want a truncated download, got %v", err)
			}
			assertPartlyWritten(t, dev, res, err, source.ErrTruncated)
		})
	}
}

// TestZipWithTwoImagesNamesTheOneWritten: the largest image of a zip is written, and the flash says
// which one and which it left out.
func TestZipWithTwoImagesNamesTheOneWritten(t *testing.T) {
	needRoot(t, "zip", "cmp")
	dir := t.TempDir()
	big := testImage(t, dir, 3<<20)
	os.Rename(big, filepath.Join(dir, "system.img"))
	os.WriteFile(filepath.Join(dir, "recovery.img"), bytes.Repeat([]byte("r"), 1<<20), 0o644)
	run(t, "sh", "-c", "cd "+dir+" && zip -q both.zip recovery.img system.img")
	dev := loopDevice(t, 8<<20)
	res, err := Flash(context.Background(), filepath.Join(dir, "both.zip"), []string{dev}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cmpDevice(t, dev, filepath.Join(dir, "system.img"))
	w := strings.Join(res[0].Warnings, "\n")
	if !strings.Contains(w, "system.img") || !strings.Contains(w, "recovery.img") {
		t.Fatalf("the result does not name the image written and the one left out: %q", w)
	}
}
