// Package source opens disk images for flashing: raw .img/.iso files and images compressed with gzip
// (parallel inflate), xz (multi-threaded), zstd, bzip2, or stored inside a zip archive. It detects the
// format from the file's magic bytes and reads the uncompressed size from the headers where the
// format records it.
package source

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/kilnproject/kiln/internal/decompress"
	"github.com/kilnproject/kiln/internal/pxz"
	"github.com/klauspost/compress/zstd"
)

// Formats.
const (
	Raw   = "raw"
	Gzip  = "gzip"
	XZ    = "xz"
	Zstd  = "zstd"
	Bzip2 = "bzip2"
	Zip   = "zip"
)

var (
	// ErrFormat is returned for a file that is not a supported image or is corrupt.
	ErrFormat = errors.New("unsupported or corrupt image file")
	// ErrTruncated is returned (with ErrFormat) when compressed data ends before its end marker:
	// most often a download that was cut off.
	ErrTruncated = errors.New("the compressed image ends early: a truncated download")
)

// Image is a probed image file or URL.
type Image struct {
	Path   string
	Format string
	// Entry is the image's name inside a zip archive; Skipped names the archive's other disk
	// images, which are not written (the largest one is chosen).
	Entry   string
	Skipped []string
	// Size is the exact uncompressed size, or -1 when the format does not record it.
	Size int64
	// MinSize is a lower bound of the uncompressed size (equal to Size when that is known).
	MinSize int64
	// FileSize is the size of the file on disk.
	FileSize int64
	// XZ describes the blocks of an xz file (for parallel decoding).
	XZ *pxz.Index
	// Decoder chooses how gzip and xz images are decompressed: "" runs igzip (ISA-L) or pigz, and
	// xz (multi-threaded liblzma), when installed, as they are faster than the Go decoders, and the
	// built-in decoders (parallel gzip, block-parallel xz) otherwise; "go" forces the built-in
	// ones; "exec" forces the programs; a program's name ("igzip", "pigz", "xz") forces that one.
	Decoder string

	remote *remote // a URL image
}

// Probe identifies path's format and uncompressed size without decompressing it. path may be an
// http(s) URL (see ProbeWith).
func Probe(path string) (*Image, error) { return ProbeWith(context.Background(), path, Fetch{}) }

// ProbeWith is Probe with the settings for a URL image: its first and last bytes are downloaded
// (with HTTP Range requests where the server answers them) to learn the format and size.
func ProbeWith(ctx context.Context, path string, fetch Fetch) (*Image, error) {
	if IsURL(path) {
		r, err := probeRemote(ctx, path, fetch)
		if err != nil {
			return nil, err
		}
		im := &Image{Path: path, FileSize: r.size, Size: -1, remote: r}
		r.mu.Lock()
		r.budget = probeBudget
		r.mu.Unlock()
		err = im.probe(r)
		r.mu.Lock()
		r.budget = -1
		r.mu.Unlock()
		if err != nil {
			r.release()
			return nil, err
		}
		return im, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open image %s: %w: not a regular file", path, ErrFormat)
	}
	im := &Image{Path: path, FileSize: st.Size(), Size: -1}
	if err := im.probe(f); err != nil {
		return nil, err
	}
	return im, nil
}

// probe reads the format and size from f, which holds im.FileSize bytes.
func (im *Image) probe(f io.ReaderAt) error {
	path, size := im.Path, im.FileSize
	head := make([]byte, 8)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		im.Format = Gzip
		im.MinSize = gzipISize(f, size)
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		im.Format = XZ
		idx, err := pxz.ReadIndex(f, size)
		switch {
		case err == nil:
			im.XZ, im.Size = idx, idx.UncompressedSize()
		case im.remote != nil && !im.remote.ranges:
			// The index is at the end, out of reach: the size stays unknown.
		default:
			return fmt.Errorf("open image %s: %w: %w; download it again", path, ErrFormat, err)
		}
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		im.Format = Zstd
		im.Size, im.MinSize = zstdSize(f, size)
	case bytes.HasPrefix(head, []byte("BZh")):
		im.Format = Bzip2
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		im.Format = Zip
		zr, err := zip.NewReader(f, size)
		if err != nil {
			return fmt.Errorf("open image %s: %w: %w", path, ErrFormat, err)
		}
		e, skipped, err := pickEntry(zr.File)
		if err != nil {
			return fmt.Errorf("open image %s: %w", path, err)
		}
		if e.UncompressedSize64 > 1<<62 {
			return fmt.Errorf("open image %s: %w: %s claims %d bytes", path, ErrFormat, e.Name, e.UncompressedSize64)
		}
		im.Entry, im.Skipped, im.Size = e.Name, skipped, int64(e.UncompressedSize64)
	default:
		im.Format, im.Size = Raw, size
	}
	if im.Size >= 0 {
		im.MinSize = im.Size
	}
	return nil
}

// pickEntry chooses the disk image inside a zip: the only file, or the largest .img/.iso/.raw/.bin;
// it also returns the names of the other disk images, which are left out.
func pickEntry(files []*zip.File) (*zip.File, []string, error) {
	var only, best *zip.File
	var images []string
	count := 0
	for _, f := range files {
		if f.FileInfo().IsDir() {
			continue
		}
		count++
		only = f
		switch strings.ToLower(filepath.Ext(f.Name)) {
		case ".img", ".iso", ".raw", ".bin":
			images = append(images, f.Name)
			if best == nil || f.UncompressedSize64 > best.UncompressedSize64 {
				best = f
			}
		}
	}
	switch {
	case best != nil:
		skipped := slices.DeleteFunc(images, func(n string) bool { return n == best.Name })
		return best, skipped, nil
	case count == 1:
		return only, nil, nil
	}
	return nil, nil, fmt.Errorf("%w: the zip holds %d files and none is a .img/.iso/.raw; unpack it and pick the image", ErrFormat, count)
}

// Open returns the uncompressed image stream. For raw images it is an io.ReaderAt (the *os.File
// itself for a local file), so a block map can skip the unmapped ranges.
func (im *Image) Open(ctx context.Context) (io.ReadCloser, error) {
	var (
		in  io.Reader
		ra  io.ReaderAt
		fc  io.Closer
		raw io.ReadCloser
	)
	if im.remote != nil {
		im.remote.setContext(ctx)
		sr := io.NewSectionReader(im.remote, 0, im.FileSize)
		in, ra, fc = sr, sr, closerFunc(func() error { return nil })
		raw = struct {
			*io.SectionReader
			io.Closer
		}{sr, fc}
	} else {
		f, err := os.Open(im.Path)
		if err != nil {
			return nil, fmt.Errorf("open image %s: %w", im.Path, err)
		}
		in, ra, fc, raw = f, f, f, f
	}
	wrap := func(r io.Reader, closers ...io.Closer) io.ReadCloser {
		return &readCloser{Reader: r, closers: append(closers, fc), path: im.Path}
	}
	fail := func(err error) (io.ReadCloser, error) {
		fc.Close()
		return nil, fmt.Errorf("open image %s: %w: %w", im.Path, ErrFormat, err)
	}
	switch im.Format {
	case Raw:
		return raw, nil
	case Gzip:
		for _, prog := range gzipPrograms {
			if im.useProgram(prog) {
				return im.program(ctx, in, fc, prog, "-dc")
			}
		}
		zr, err := newGzipReader(ra, im.FileSize)
		if err != nil {
			return fail(err)
		}
		return wrap(zr, zr), nil
	case XZ:
		return im.openXZ(ctx, in, ra, fc)
	case Zstd:
		// Eight blocks in flight keep both of the decoder's stages busy: on two cores this decodes
		// 30 % faster than the default (GOMAXPROCS) and faster than the zstd program.
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(8), zstd.WithDecoderMaxMemory(1<<40),
			zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return fail(err)
		}
		return wrap(zr, closerFunc(func() error { zr.Close(); return nil })), nil
	case Bzip2:
		return wrap(bzip2.NewReader(bufio.NewReaderSize(in, 1<<20))), nil
	case Zip:
		zr, err := zip.NewReader(ra, im.FileSize)
		if err != nil {
			return fail(err)
		}
		for _, e := range zr.File {
			if e.Name == im.Entry {
				rc, err := e.Open()
				if err != nil {
					return fail(err)
				}
				return wrap(rc, rc), nil
			}
		}
		return fail(fmt.Errorf("%s vanished from the zip", im.Entry))
	}
	return fail(fmt.Errorf("format %q", im.Format))
}

// Decoders are the values Image.Decoder accepts.
var Decoders = []string{"", "exec", "go", "igzip", "pigz", "xz"}

// gzipPrograms are the gzip decoders to run, fastest first: ISA-L's igzip inflates about twice as
// fast as pigz, whose inflate is zlib's on one thread.
var gzipPrograms = []string{"igzip", "pigz"}

// useProgram reports whether to decompress with the named program.
func (im *Image) useProgram(name string) bool {
	switch im.Decoder {
	case "go":
		return false
	case "", "exec":
		return decompress.Available(name) || (im.Decoder == "exec" && name != "igzip")
	}
	return im.Decoder == name
}

// program decompresses in with a program; its failures are reported as ErrFormat, or as the
// download's failure when that cut its input.
func (im *Image) program(ctx context.Context, in io.Reader, fc io.Closer, name string, args ...string) (io.ReadCloser, error) {
	rc := &readCloser{path: im.Path}
	if im.remote != nil {
		fr := &failReader{r: in}
		in, rc.inputErr = fr, fr.error
	} else {
		defer fc.Close() // the program has its own copy of the file
	}
	r, err := decompress.Program(ctx, in, name, args...)
	if err != nil {
		return nil, err
	}
	rc.Reader, rc.closers = r, []io.Closer{r}
	return rc, nil
}

// failReader keeps the first error of its reader: a program fed through a pipe only sees its
// input end.
type failReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (f *failReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		f.mu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.mu.Unlock()
	}
	return n, err
}

func (f *failReader) error() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

type readCloser struct {
	io.Reader
	closers  []io.Closer
	path     string
	inputErr func() error // the input's own failure, when a program reads it
}

func (r *readCloser) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && err != io.EOF {
		if r.inputErr != nil {
			if ierr := r.inputErr(); ierr != nil {
				return n, ierr
			}
		}
		if errors.Is(err, ErrDownload) {
			return n, err
		}
		err = decodeError(r.path, err)
	}
	return n, err
}

// decodeError classifies a decoder's failure: a cut-off stream is ErrTruncated, anything else
// corrupt data; both wrap ErrFormat.
func decodeError(path string, err error) error {
	var perr *decompress.ProgramError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pxz.ErrTruncated) || (errors.As(err, &perr) && perr.Truncated()) {
		return fmt.Errorf("decompress %s: %w: %w (%w); download it again", path, ErrFormat, ErrTruncated, err)
	}
	return fmt.Errorf("decompress %s: %w: %w", path, ErrFormat, err)
}

// Measure decompresses the image and returns its size, reading at most limit bytes (it returns
// limit when the image holds more). A damaged or cut-off image is an error.
func (im *Image) Measure(ctx context.Context, limit int64) (int64, error) {
	r, err := im.Open(ctx)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, limit))
	if cerr := r.Close(); err == nil && n < limit && cerr != nil {
		err = decodeError(im.Path, cerr)
	}
	return n, err
}

func (r *readCloser) Close() error {
	var errs []error
	for _, c := range r.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// gzipISize returns the size recorded in a gzip trailer (the last member's size modulo 4 GiB), which
// is a lower bound of the real size; it is only a hint.
func gzipISize(f io.ReaderAt, size int64) int64 {
	if size < 18 {
		return 0
	}
	var b [4]byte
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint32(b[:]))
}

// zstdSize walks the frames of a zstd file (headers and block headers only) and sums their content
// sizes. It returns -1 as the exact size when a frame does not record its size, with the sum of the
// recorded ones as a lower bound.
func zstdSize(f io.ReaderAt, size int64) (exact, lower int64) {
	exact = 0
	off := int64(0)
	var hdr [18]byte
	for off < size {
		n, _ := f.ReadAt(hdr[:], off)
		if n < 8 {
			return -1, lower
		}
		magic := binary.LittleEndian.Uint32(hdr[:4])
		if magic&0xfffffff0 == 0x184d2a50 { // skippable frame
			off += 8 + int64(binary.LittleEndian.Uint32(hdr[4:8]))
			continue
		}
		if magic != 0xfd2fb528 {
			return -1, lower
		}
		fhd := hdr[4]
		single := fhd&0x20 != 0
		pos := 5
		if !single {
			pos++ // window descriptor
		}
		pos += []int{0, 1, 2, 4}[fhd&3]
		fcsLen := []int{0, 2, 4, 8}[fhd>>6]
		if fhd>>6 == 0 && single {
			fcsLen = 1
		}
		if fcsLen == 0 {
			exact = -1
		} else {
			var v [8]byte
			copy(v[:], hdr[pos:pos+fcsLen])
			u := binary.LittleEndian.Uint64(v[:])
			if fcsLen == 2 {
				u += 256
			}
			if u > 1<<62 || lower+int64(u) > 1<<62 {
				return -1, lower // not a real size: the decoder will find the frame corrupt
			}
			fcs := int64(u)
			lower += fcs
			if exact >= 0 {
				exact += fcs
			}
		}
		off += int64(pos + fcsLen)
		for { // blocks
			var bh [3]byte
			if _, err := f.ReadAt(bh[:], off); err != nil {
				return -1, lower
			}
			v := uint32(bh[0]) | uint32(bh[1])<<8 | uint32(bh[2])<<16
			last, typ, bsize := v&1 != 0, (v>>1)&3, int64(v>>3)
			off += 3
			if typ == 1 {
				off++ // RLE: one byte repeated
			} else {
				off += bsize
			}
			if last {
				break
			}
		}
		if fhd&0x04 != 0 {
			off += 4 // content checksum
		}
	}
	return exact, lower
}
