package deb

import (
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"

	decomp "github.com/kilnproject/kiln/internal/decompress"
	"github.com/kilnproject/kiln/internal/pxz"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var magics = []struct {
	comp  string
	magic []byte
}{
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
	{"zst", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"gz", []byte{0x1f, 0x8b}},
	{"bz2", []byte("BZh")},
}

// sniff names the compression the data starts with ("" for none of the known ones).
func sniff(head []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.comp
		}
	}
	if len(head) >= 262 && string(head[257:262]) == "ustar" {
		return "tar"
	}
	return "unknown"
}

// XZMode selects the xz decoder: "auto" (the xz tool when installed, else Go), "exec" or "go".
// It is read from $KILN_XZ at first use; tests and benchmarks may set it directly.
var XZMode = os.Getenv("KILN_XZ")

// decompress returns a reader of the member's uncompressed tar stream and a close function that
// ends the decoder (reporting its failure, if any); close may be called more than once.
func decompress(sec *io.SectionReader, m member) (io.Reader, func() error, error) {
	head := make([]byte, 262)
	n, _ := sec.ReadAt(head, 0)
	head = head[:n]
	got := sniff(head)
	want := m.compression
	if want == "" {
		want = "tar"
	}
	if got != want {
		desc := "unrecognised data"
		if got == "tar" {
			desc = "an uncompressed tar"
		} else if got != "unknown" {
			desc = got + " data"
		}
		if n == 0 {
			desc = "empty"
		}
		return nil, nil, fmt.Errorf("%w: %s holds %s, not %s; the package is damaged or was built wrongly", ErrCompression, m.name, desc, want)
	}
	nop := func() error { return nil }
	switch m.compression {
	case "":
		return sec, nop, nil
	case "gz":
		zr, err := gzip.NewReader(sec)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		return zr, zr.Close, nil
	case "zst":
		zr, err := zstd.NewReader(sec, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		return zr, func() error { zr.Close(); return nil }, nil
	case "bz2":
		return bzip2.NewReader(sec), nop, nil
	case "xz":
		return decompressXZ(sec, m.name)
	}
	return nil, nil, fmt.Errorf("%w: %s: unknown compression %q", ErrCompression, m.name, m.compression)
}

func decompressXZ(sec *io.SectionReader, name string) (io.Reader, func() error, error) {
	mode := XZMode
	if mode == "" || mode == "auto" {
		mode = "go"
		if _, err := exec.LookPath("xz"); err == nil {
			mode = "exec"
		}
	}
	switch mode {
	case "exec":
		return execXZ(sec, name)
	case "go":
		return goXZ(sec, name)
	}
	return nil, nil, fmt.Errorf("KILN_XZ=%q: want auto, exec or go", mode)
}

// execXZ runs "xz -dc -T0" (multi-threaded decoding since xz 5.4) over the member.
func execXZ(sec *io.SectionReader, name string) (io.Reader, func() error, error) {
	r, err := decomp.Program(context.Background(), sec, "xz", "--decompress", "--stdout", "--threads=0")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	mapErr := func(err error) error {
		var pe *decomp.ProgramError
		switch {
		case errors.As(err, &pe) && pe.Truncated():
			return fmt.Errorf("%w: %s: xz data ends early; download the package again", ErrTruncated, name)
		case err != nil && err != io.EOF:
			return fmt.Errorf("%s: %w", name, err)
		}
		return err
	}
	return readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		return n, mapErr(err)
	}), func() error { return mapErr(r.Close()) }, nil
}

// goXZ decodes with the built-in block-parallel decoder.
func goXZ(sec *io.SectionReader, name string) (io.Reader, func() error, error) {
	damaged := func(err error) error {
		return fmt.Errorf("%w: %s: %v; download the package again", ErrTruncated, name, err)
	}
	idx, err := pxz.ReadIndex(sec, sec.Size())
	if err != nil {
		return nil, nil, damaged(err)
	}
	r := pxz.NewReader(sec, idx, runtime.GOMAXPROCS(0))
	return readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		if err != nil && err != io.EOF {
			err = damaged(err)
		}
		return n, err
	}), r.Close, nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// Decompress returns a reader of the data in sec, decompressed according to its magic bytes (xz,
// zstd, gzip, bzip2, or none); name is used in messages. Close it to end the decoder early; a
// decoding failure is reported by Read or, for a cut-off stream, by Close.
func Decompress(sec *io.SectionReader, name string) (io.ReadCloser, error) {
	head := make([]byte, 262)
	n, _ := sec.ReadAt(head, 0)
	comp := sniff(head[:n])
	switch comp {
	case "tar", "unknown":
		comp = ""
	}
	r, closeFn, err := decompress(sec, member{name: name, compression: comp, size: sec.Size()})
	if err != nil {
		return nil, err
	}
	return readCloser{r, closeFn}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
