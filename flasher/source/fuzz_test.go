package source

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// decodeLimit is how much of a fuzzed image is decoded: a few bytes can claim (and expand to)
// gigabytes, and reading this far exercises every decoder.
const decodeLimit = 8 << 20

// seedImages are small valid files of every supported format.
func seedImages(f *testing.F) [][]byte {
	data := bytes.Repeat([]byte("kiln seed image\x00\x00\x00\x00"), 512)
	var gz, x, zs, zp bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(data)
	gw.Close()
	xw, _ := xz.NewWriter(&x)
	xw.Write(data)
	xw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(data)
	zw.Close()
	w := zip.NewWriter(&zp)
	for _, name := range []string{"a.img", "README", "b.img"} {
		e, _ := w.Create(name)
		e.Write(data[:len(name)*100])
	}
	w.Close()
	bz, err := os.ReadFile(filepath.Join("testdata", "seed.bz2"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(bz))); err != nil {
		f.Fatal(err)
	}
	return [][]byte{data, gz.Bytes(), x.Bytes(), zs.Bytes(), zp.Bytes(), bz}
}

// FuzzProbe writes arbitrary bytes to a file, probes it and decodes it with the built-in decoders:
// nothing panics or hangs, a failure is an error wrapping ErrFormat, and a file that decodes in
// full holds exactly the size its headers promised.
func FuzzProbe(f *testing.F) {
	for _, b := range seedImages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, contents []byte) {
		p := filepath.Join(t.TempDir(), "image")
		if err := os.WriteFile(p, contents, 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := Probe(p)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("probe error without ErrFormat: %v", err)
			}
			return
		}
		if im.Size < -1 || im.MinSize < 0 || (im.Size >= 0 && im.MinSize != im.Size) || im.FileSize != int64(len(contents)) {
			t.Fatalf("probe sizes: %+v", im)
		}
		im.Decoder = "go"
		n, err := decode(t, im)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("decode error without ErrFormat: %v", err)
			}
			return
		}
		if n < decodeLimit && im.Size >= 0 && n != im.Size {
			t.Fatalf("decoded %d bytes of a %s image whose header says %d", n, im.Format, im.Size)
		}
	})
}

// FuzzZipEntry feeds arbitrary zip archives to the entry picker and reader: an archive is refused
// with ErrFormat or yields one of its files, which reads to the end or fails with ErrFormat.
func FuzzZipEntry(f *testing.F) {
	f.Add(seedImages(f)[4])
	for _, names := range [][]string{{"only"}, {"x/", "x/disk.IMG", "disk.iso"}, {"a", "b"}} {
		var b bytes.Buffer
		w := zip.NewWriter(&b)
		for _, n := range names {
			e, _ := w.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
			e.Write([]byte(n))
		}
		w.Close()
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, contents []byte) {
		zr, err := zip.NewReader(bytes.NewReader(contents), int64(len(contents)))
		if err != nil {
			return
		}
		e, skipped, err := pickEntry(zr.File)
		if err != nil {
			if !errors.Is(err, ErrFormat) || e != nil {
				t.Fatalf("pick: %v, %v", e, err)
			}
			return
		}
		for _, s := range skipped {
			if s == e.Name {
				t.Fatalf("%s is both chosen and skipped", s)
			}
		}
		if len(contents) < 4 || !bytes.HasPrefix(contents, []byte("PK\x03\x04")) {
			return // Probe identifies zips by their first local header
		}
		p := filepath.Join(t.TempDir(), "image.zip")
		if err := os.WriteFile(p, contents, 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := Probe(p)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("probe error without ErrFormat: %v", err)
			}
			return
		}
		if im.Format != Zip || im.Entry != e.Name {
			t.Fatalf("probe chose %q (%s), the picker %q", im.Entry, im.Format, e.Name)
		}
		if _, err := decode(t, im); err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("read error without ErrFormat: %v", err)
		}
	})
}

// decode reads up to decodeLimit bytes of the image, within a deadline.
func decode(t *testing.T, im *Image) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := im.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(r, decodeLimit))
	if ctx.Err() != nil {
		t.Fatalf("decoding %d bytes of a %s image took more than 30 s", n, im.Format)
	}
	return n, err
}
