package deb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/xi2/xz"
)

// The pure-Go xz path. xz files written with blocks (dpkg-deb and xz -T write 24 MiB blocks) record
// each block's compressed and uncompressed size in the stream index, so the blocks can be decoded
// independently on all CPUs. Each block is wrapped in a minimal single-block xz stream of its own
// (header, block, one-record index, footer) and decoded by github.com/xi2/xz, a port of XZ
// Embedded that is about ten times faster than github.com/ulikunitz/xz; the checksums of every
// block and index are verified as usual. Files without usable index information are decoded as
// one stream.

type xzBlock struct {
	off      int64 // in the file
	unpadded int64 // header + compressed data + check
	size     int64 // uncompressed
}

type xzReader struct {
	io.Reader
	close func()
}

func (r *xzReader) Close() error {
	if r.close != nil {
		r.close()
	}
	return nil
}

func newXZReader(sec *io.SectionReader) (*xzReader, error) {
	flags, blocks, err := xzIndex(sec)
	if err != nil || len(blocks) < 2 || runtime.GOMAXPROCS(0) < 2 {
		zr, err := xz.NewReader(sec, 0)
		if err != nil {
			return nil, xzErr(err)
		}
		return &xzReader{Reader: errMapper{zr}}, nil
	}
	return parallelXZ(sec, flags, blocks), nil
}

// xzErr turns the decoder's errors into the package's: a cut-off stream is ErrTruncated.
func xzErr(err error) error {
	switch {
	case err == nil || err == io.EOF:
		return err
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, xz.ErrData), errors.Is(err, xz.ErrBuf):
		return fmt.Errorf("%w: xz data is cut off or damaged; download the package again", ErrTruncated)
	}
	return fmt.Errorf("xz: %w", err)
}

type errMapper struct{ r io.Reader }

func (e errMapper) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	return n, xzErr(err)
}

// xzIndex reads the stream flags and the block list of a single-stream xz file.
func xzIndex(r *io.SectionReader) (flags [2]byte, blocks []xzBlock, err error) {
	size := r.Size()
	var hdr, foot [12]byte
	if size < 32 {
		return flags, nil, errXZLayout
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return flags, nil, err
	}
	if _, err := r.ReadAt(foot[:], size-12); err != nil {
		return flags, nil, err
	}
	if string(foot[10:12]) != "YZ" || !bytes.Equal(foot[8:10], hdr[6:8]) {
		return flags, nil, errXZLayout // stream padding or several streams
	}
	copy(flags[:], hdr[6:8])
	indexSize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	if indexSize > size-24 || indexSize > 64<<20 {
		return flags, nil, errXZLayout
	}
	idx := make([]byte, indexSize)
	if _, err := r.ReadAt(idx, size-12-indexSize); err != nil {
		return flags, nil, err
	}
	if idx[0] != 0 || crc32.ChecksumIEEE(idx[:len(idx)-4]) != binary.LittleEndian.Uint32(idx[len(idx)-4:]) {
		return flags, nil, errXZLayout
	}
	p := idx[1:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count > 1<<20 {
		return flags, nil, errXZLayout
	}
	p = p[n:]
	off := int64(12)
	for range count {
		unpadded, n1 := binary.Uvarint(p)
		if n1 <= 0 {
			return flags, nil, errXZLayout
		}
		usize, n2 := binary.Uvarint(p[n1:])
		if n2 <= 0 {
			return flags, nil, errXZLayout
		}
		p = p[n1+n2:]
		blocks = append(blocks, xzBlock{off: off, unpadded: int64(unpadded), size: int64(usize)})
		off += (int64(unpadded) + 3) &^ 3
	}
	if off != size-12-indexSize {
		return flags, nil, errXZLayout
	}
	return flags, blocks, nil
}

// wrapBlock builds a complete single-block xz stream around one block's bytes.
func wrapBlock(flags [2]byte, blk []byte, b xzBlock) []byte {
	var out bytes.Buffer
	out.Grow(len(blk) + 64)
	out.Write([]byte{0xfd, '7', 'z', 'X', 'Z', 0})
	out.Write(flags[:])
	binary.Write(&out, binary.LittleEndian, crc32.ChecksumIEEE(flags[:]))
	out.Write(blk)
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, 1)
	idx = binary.AppendUvarint(idx, uint64(b.unpadded))
	idx = binary.AppendUvarint(idx, uint64(b.size))
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	out.Write(idx)
	var foot [12]byte
	binary.LittleEndian.PutUint32(foot[4:8], uint32(len(idx)/4-1))
	copy(foot[8:10], flags[:])
	binary.LittleEndian.PutUint32(foot[0:4], crc32.ChecksumIEEE(foot[4:10]))
	copy(foot[10:], "YZ")
	out.Write(foot[:])
	return out.Bytes()
}

// parallelXZ decodes the blocks on GOMAXPROCS workers and returns them in order, keeping at most
// workers+1 decoded blocks in memory.
func parallelXZ(sec *io.SectionReader, flags [2]byte, blocks []xzBlock) *xzReader {
	workers := min(runtime.GOMAXPROCS(0), len(blocks))
	type result struct {
		data []byte
		err  error
	}
	results := make([]chan result, len(blocks))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	slots := make(chan struct{}, workers+1)
	done := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(done) }) }
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := range blocks {
			select {
			case slots <- struct{}{}:
			case <-done:
				return
			}
			select {
			case jobs <- i:
			case <-done:
				return
			}
		}
	}()
	for range workers {
		go func() {
			for i := range jobs {
				b := blocks[i]
				raw := make([]byte, (b.unpadded+3)&^3)
				var res result
				if _, err := sec.ReadAt(raw, b.off); err != nil {
					res.err = fmt.Errorf("%w: xz block %d: %v", ErrTruncated, i, err)
				} else if zr, err := xz.NewReader(bytes.NewReader(wrapBlock(flags, raw, b)), 0); err != nil {
					res.err = xzErr(err)
				} else {
					res.data = make([]byte, b.size)
					if _, err := io.ReadFull(zr, res.data); err != nil {
						res.err = xzErr(err)
					} else if n, err := zr.Read(make([]byte, 1)); n != 0 || err != io.EOF {
						res.err = fmt.Errorf("xz block %d: size differs from the index (%v)", i, xzErr(err))
					}
				}
				results[i] <- res
			}
		}()
	}
	pr := &orderedReader{next: func(i int) ([]byte, error) {
		select {
		case r := <-results[i]:
			<-slots
			return r.data, r.err
		case <-done:
			return nil, io.ErrClosedPipe
		}
	}, n: len(blocks)}
	return &xzReader{Reader: pr, close: stop}
}

type orderedReader struct {
	next func(int) ([]byte, error)
	n, i int
	cur  []byte
	err  error
}

func (o *orderedReader) Read(p []byte) (int, error) {
	for len(o.cur) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.i == o.n {
			return 0, io.EOF
		}
		o.cur, o.err = o.next(o.i)
		o.i++
	}
	n := copy(p, o.cur)
	o.cur = o.cur[n:]
	return n, nil
}
