package flasher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/kilnproject/kiln/internal/units"
)

// MaxCustomisedPartition bounds the partition a Customiser changes: it is held in a temporary file
// while the image streams past, and its FAT in memory while it is checked. Boot partitions of
// Raspberry Pi OS and Ubuntu are 512 MiB.
const MaxCustomisedPartition = 1 << 30

// Customiser changes one partition of an image while it is flashed (Options.Customise); package
// flasher/customise writes first-boot settings this way. The partition's bytes are collected in a
// temporary file as the image streams, changed there and written in their place, so the drive holds
// — and verification compares against — the changed bytes. Everything else is written as it comes.
type Customiser interface {
	// Locate is given the image's first bytes (up to 1 MiB) and returns the byte range to change;
	// n == 0 writes the image unchanged and note says why.
	Locate(head []byte) (off, n int64, note string, err error)
	// Apply changes the range, held in part (size bytes from offset 0), in place. changed false
	// leaves it as it was, note says what was done or why not.
	Apply(ctx context.Context, part *os.File, size int64) (changed bool, note string, err error)
}

// customReader passes an image through, replacing the range its Customiser changes.
type customReader struct {
	ctx   context.Context
	src   io.Reader // the image as it comes
	c     Customiser
	in    hash.Hash    // sha256 of the source bytes, for a published checksum (nil: not wanted)
	tmp   string       // directory of the temporary file
	r     io.Reader    // what is read now
	stage func() error // what comes after r, nil at the last part

	note    string // what the Customiser did, or why not
	changed bool
	cleanup func()

	// partOff and partSize are the range the Customiser changes, once the first Read located it
	// (partSize 0: none).
	partOff, partSize int64
}

// partition returns the range the Customiser changes: with a block map, it is written in full
// and its ranges' checksums, which describe the unchanged bytes, are not checked.
func (cr *customReader) partition() (off, n int64) { return cr.partOff, cr.partSize }

func newCustomReader(ctx context.Context, src io.Reader, c Customiser, hashSource bool, tmpDir string) *customReader {
	cr := &customReader{ctx: ctx, c: c, tmp: tmpDir}
	if hashSource {
		cr.in = sha256.New()
		src = io.TeeReader(src, cr.in)
	}
	cr.src = src
	cr.stage = cr.locate
	return cr
}

func (cr *customReader) Read(p []byte) (int, error) {
	for {
		if cr.r != nil {
			n, err := cr.r.Read(p)
			if err == io.EOF && cr.stage != nil {
				err = nil
				cr.r = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		if cr.stage == nil {
			return 0, io.EOF
		}
		st := cr.stage
		cr.stage = nil
		if err := st(); err != nil {
			return 0, err
		}
	}
}

// locate reads the first MiB, asks where the partition is, and plans the rest.
func (cr *customReader) locate() error {
	head := make([]byte, headSize)
	n, err := io.ReadFull(cr.src, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	head = head[:n]
	off, size, note, err := cr.c.Locate(head)
	if err != nil {
		return fmt.Errorf("customise: %w", err)
	}
	if size <= 0 {
		cr.note = note
		cr.r = io.MultiReader(bytes.NewReader(head), cr.src)
		return nil
	}
	if off < 0 || size > MaxCustomisedPartition || off > 1<<50 {
		return fmt.Errorf("customise: the boot partition is %s, larger than the %s Kiln changes while flashing; flash without first-boot settings",
			units.Decimal(size), units.Decimal(MaxCustomisedPartition))
	}
	cr.partOff, cr.partSize = off, size
	rest := io.MultiReader(bytes.NewReader(head), cr.src)
	cr.r = io.LimitReader(rest, off)
	cr.stage = func() error { return cr.customise(rest, off, size) }
	return nil
}

// customise collects the partition in a temporary file, changes it and queues its bytes.
func (cr *customReader) customise(rest io.Reader, off, size int64) error {
	f, err := os.CreateTemp(cr.tmp, "kiln-customise-*")
	if err != nil {
		return fmt.Errorf("customise: temporary file for the boot partition: %w", err)
	}
	cr.cleanup = func() { f.Close(); os.Remove(f.Name()) }
	if err := copySparse(cr.ctx, f, rest, size); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the image ends inside its boot partition (bytes %d-%d): it is truncated", ErrSource, off, off+size-1)
		}
		return fmt.Errorf("customise: copy the boot partition to %s: %w (it needs %s of free space there)", f.Name(), err, units.Decimal(size))
	}
	changed, note, err := cr.c.Apply(cr.ctx, f, size)
	if err != nil {
		return fmt.Errorf("customise: %w", err)
	}
	cr.note, cr.changed = note, changed
	cr.r = io.NewSectionReader(f, 0, size)
	cr.stage = func() error { cr.r = rest; return nil }
	return nil
}

// copySparse copies n bytes from r to f, skipping blocks of zeros (f starts empty and sized n).
func copySparse(ctx context.Context, f *os.File, r io.Reader, n int64) error {
	if err := f.Truncate(n); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var zero [64 << 10]byte
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := int(min(int64(len(buf)), n-off))
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return err
		}
		for i := 0; i < k; i += len(zero) {
			blk := buf[i:min(i+len(zero), k)]
			if bytes.Equal(blk, zero[:len(blk)]) {
				continue
			}
			if _, err := f.WriteAt(blk, off+int64(i)); err != nil {
				return err
			}
		}
		off += int64(k)
	}
	return nil
}

// sum returns the sha256 of the source bytes read so far.
func (cr *customReader) sum() string { return hex.EncodeToString(cr.in.Sum(nil)) }

func (cr *customReader) close() {
	if cr.cleanup != nil {
		cr.cleanup()
	}
}
