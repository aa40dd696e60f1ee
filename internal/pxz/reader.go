package pxz

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/xi2/xz"
)

const (
	chunkSize = 1 << 20
	// aheadBudget bounds the decoded output buffered ahead of the reader, over all workers.
	aheadBudget = 48 << 20
	// dictBudget bounds the LZMA2 dictionaries of the workers together: a file compressed with
	// large dictionaries (xz -9: 64 MiB) is decoded on fewer goroutines.
	dictBudget = 128 << 20
)

var (
	chunkPool   = sync.Pool{New: func() any { return make([]byte, chunkSize) }}
	errCanceled = errors.New("reader closed")
)

// Reader returns the decoded data of an xz file's blocks in order, decoding up to workers blocks
// at once. Close stops the workers; it does not close the underlying file.
type Reader struct {
	r       io.ReaderAt
	blocks  []Block
	chans   []chan []byte
	errs    []error
	cur     int
	buf     []byte
	pending []byte
	cancel  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// NewReader starts decoding the blocks listed in idx (from ReadIndex of the same file) on up to
// workers goroutines.
func NewReader(r io.ReaderAt, idx *Index, workers int) *Reader {
	p := &Reader{r: r, blocks: idx.Blocks, chans: make([]chan []byte, len(idx.Blocks)),
		errs: make([]error, len(idx.Blocks)), cancel: make(chan struct{})}
	if len(p.blocks) == 0 {
		return p
	}
	if dict := p.dictSize(0); dict > 0 {
		workers = min(workers, int(dictBudget/dict))
	}
	workers = max(1, min(workers, len(p.blocks)))
	for i, b := range p.blocks {
		ahead := min(b.UncompressedSize, aheadBudget/int64(workers))
		p.chans[i] = make(chan []byte, max(1, int(ahead/chunkSize)))
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range p.blocks {
			select {
			case next <- i:
			case <-p.cancel:
				return
			}
		}
	}()
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var zr *xz.Reader
			for i := range next {
				if err := p.decode(i, &zr); err != nil {
					p.errs[i] = fmt.Errorf("xz block %d of %d: %w", i+1, len(p.blocks), err)
				}
				close(p.chans[i])
			}
		}()
	}
	return p
}

// readAt reads exactly len(b) bytes; a read past the end of the file is ErrTruncated.
func (p *Reader) readAt(b []byte, off int64) error {
	n, err := p.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%w at byte %d", ErrTruncated, off+int64(n))
	}
	return err
}

// dictSize returns the LZMA2 dictionary size that block i's header asks for, or 0 when the header
// cannot be read (the decoder reports why).
func (p *Reader) dictSize(i int) int64 {
	b := p.blocks[i]
	hdr := make([]byte, 1024)
	if err := p.readAt(hdr[:1], b.Offset); err != nil || hdr[0] == 0 {
		return 0
	}
	hdr = hdr[:(int(hdr[0])+1)*4]
	if err := p.readAt(hdr, b.Offset); err != nil {
		return 0
	}
	flags, pos := hdr[1], 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} { // optional sizes
		if present {
			_, n := binary.Uvarint(hdr[pos:])
			if n <= 0 {
				return 0
			}
			pos += n
		}
	}
	// The filters in order; the last one is LZMA2 (id 0x21, one property byte: the dictionary).
	var dict int64
	for range flags&3 + 1 {
		id, n := binary.Uvarint(hdr[pos:])
		if n <= 0 {
			return 0
		}
		pos += n
		size, n := binary.Uvarint(hdr[pos:])
		if n <= 0 || pos+n+int(size) > len(hdr) {
			return 0
		}
		pos += n
		if id == 0x21 && size == 1 && hdr[pos]&0x3f < 40 {
			bits := hdr[pos] & 0x3f
			dict = int64(2|(bits&1)) << (bits/2 + 11)
		}
		pos += int(size)
	}
	return dict
}

// stream wraps block i into a complete single-block xz stream (header, the block, a one-record
// index, footer), so that the decoder verifies the block header, the integrity check and both
// sizes as it would in the original file.
func (p *Reader) stream(i int) io.Reader {
	b := p.blocks[i]
	flags := []byte{0, b.Check}
	head := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, flags...)
	head = binary.LittleEndian.AppendUint32(head, crc32.ChecksumIEEE(flags))
	idx := binary.AppendUvarint([]byte{0, 1}, uint64(b.UnpaddedSize))
	idx = binary.AppendUvarint(idx, uint64(b.UncompressedSize))
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	foot := binary.LittleEndian.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, flags...)
	foot = append(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(foot)), foot...)
	foot = append(foot, 'Y', 'Z')
	return io.MultiReader(bytes.NewReader(head),
		&section{p: p, off: b.Offset, n: (b.UnpaddedSize + 3) &^ 3},
		bytes.NewReader(append(idx, foot...)))
}

// section reads n bytes of the file from off; a file that ends early is ErrTruncated.
type section struct {
	p      *Reader
	off, n int64
}

func (s *section) Read(b []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), s.n)]
	if err := s.p.readAt(b, s.off); err != nil {
		return 0, err
	}
	s.off += int64(len(b))
	s.n -= int64(len(b))
	return len(b), nil
}

// decode decodes block i into its channel; zr is the worker's decoder, reused from block to block.
func (p *Reader) decode(i int, zr **xz.Reader) error {
	src := bufio.NewReaderSize(p.stream(i), 256<<10)
	if *zr == nil {
		r, err := xz.NewReader(src, xz.DefaultDictMax)
		if err != nil {
			return decodeErr(err)
		}
		r.Multistream(false)
		*zr = r
	} else if err := (*zr).Reset(src); err != nil {
		return decodeErr(err)
	}
	for {
		chunk := chunkPool.Get().([]byte)
		n, err := io.ReadFull(*zr, chunk)
		if n > 0 {
			select {
			case p.chans[i] <- chunk[:n]:
			case <-p.cancel:
				return errCanceled
			}
		} else {
			chunkPool.Put(chunk) //nolint:staticcheck // fixed-size byte slices
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF && n < len(chunk) {
			return nil
		}
		if err != nil {
			return decodeErr(err)
		}
	}
}

// decodeErr maps the decoder's errors to the package's.
func decodeErr(err error) error {
	switch {
	case errors.Is(err, ErrTruncated), errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, xz.ErrOptions), errors.Is(err, xz.ErrUnsupportedCheck), errors.Is(err, xz.ErrMemlimit):
		return fmt.Errorf("%w: %v (decode with the xz program)", ErrCorrupt, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

func (p *Reader) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		if p.buf != nil {
			chunkPool.Put(p.buf[:cap(p.buf)]) //nolint:staticcheck
			p.buf = nil
		}
		if p.cur >= len(p.chans) {
			return 0, io.EOF
		}
		chunk, ok := <-p.chans[p.cur]
		if !ok {
			if err := p.errs[p.cur]; err != nil {
				return 0, err
			}
			p.cur++
			continue
		}
		p.buf, p.pending = chunk, chunk
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

// Close stops the decoding goroutines and waits for them.
func (p *Reader) Close() error {
	p.once.Do(func() {
		close(p.cancel)
		p.wg.Wait()
	})
	return nil
}
