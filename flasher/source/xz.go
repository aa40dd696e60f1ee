package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// XZIndex lists the blocks of an xz file, read from the indexes at the end of its streams.
type XZIndex struct {
	Blocks []XZBlock
}

// XZBlock is one independently decodable block.
type XZBlock struct {
	Offset           int64 // of the block header in the file
	UnpaddedSize     int64 // header + compressed data + check
	UncompressedSize int64
	Check            byte // the stream's check type
}

// UncompressedSize is the size of the decompressed data.
func (x *XZIndex) UncompressedSize() int64 {
	var n int64
	for _, b := range x.Blocks {
		n += b.UncompressedSize
	}
	return n
}

var crc64Table = crc64.MakeTable(crc64.ECMA)

func xzCheckSize(c byte) int64 {
	switch {
	case c == 0:
		return 0
	case c <= 3:
		return 4
	case c <= 6:
		return 8
	case c <= 9:
		return 16
	case c <= 12:
		return 32
	}
	return 64
}

func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, fmt.Errorf("%w: bad xz integer", ErrFormat)
	}
	return v, n, nil
}

// ReadXZIndex reads the indexes of every stream in an xz file, walking back from the end.
func ReadXZIndex(f io.ReaderAt, size int64) (*XZIndex, error) {
	var streams [][]XZBlock
	end := size
	for end > 0 {
		var foot [12]byte
		if end < 24 {
			return nil, fmt.Errorf("%w: truncated xz file", ErrFormat)
		}
		if _, err := f.ReadAt(foot[:], end-12); err != nil {
			return nil, err
		}
		if bytes.Equal(foot[8:], []byte{0, 0, 0, 0}) { // stream padding
			end -= 4
			continue
		}
		if foot[10] != 'Y' || foot[11] != 'Z' || crc32.ChecksumIEEE(foot[4:10]) != binary.LittleEndian.Uint32(foot[:4]) {
			return nil, fmt.Errorf("%w: no xz stream footer at offset %d", ErrFormat, end-12)
		}
		check := foot[9] & 0x0f
		indexSize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
		indexOff := end - 12 - indexSize
		if indexOff < 12 {
			return nil, fmt.Errorf("%w: bad xz index size", ErrFormat)
		}
		idx := make([]byte, indexSize)
		if _, err := f.ReadAt(idx, indexOff); err != nil {
			return nil, err
		}
		if idx[0] != 0 || crc32.ChecksumIEEE(idx[:indexSize-4]) != binary.LittleEndian.Uint32(idx[indexSize-4:]) {
			return nil, fmt.Errorf("%w: corrupt xz index", ErrFormat)
		}
		count, p, err := readUvarint(idx[1:])
		if err != nil {
			return nil, err
		}
		pos := 1 + p
		var blocks []XZBlock
		var total int64
		for i := uint64(0); i < count; i++ {
			unpadded, n, err := readUvarint(idx[pos:])
			if err != nil {
				return nil, err
			}
			pos += n
			usize, n, err := readUvarint(idx[pos:])
			if err != nil {
				return nil, err
			}
			pos += n
			blocks = append(blocks, XZBlock{UnpaddedSize: int64(unpadded), UncompressedSize: int64(usize), Check: check})
			total += (int64(unpadded) + 3) &^ 3
		}
		streamStart := indexOff - total - 12
		if streamStart < 0 {
			return nil, fmt.Errorf("%w: xz index does not fit the file", ErrFormat)
		}
		off := streamStart + 12
		for i := range blocks {
			blocks[i].Offset = off
			off += (blocks[i].UnpaddedSize + 3) &^ 3
		}
		streams = append(streams, blocks)
		end = streamStart
	}
	x := &XZIndex{}
	for i := len(streams) - 1; i >= 0; i-- {
		x.Blocks = append(x.Blocks, streams[i]...)
	}
	return x, nil
}

func (im *Image) openXZ(ctx context.Context, f *os.File) (io.ReadCloser, error) {
	if im.useProgram("xz") {
		return im.program(ctx, f, "xz", "--decompress", "--stdout", "--threads=0")
	}
	if im.XZ != nil && len(im.XZ.Blocks) > 1 {
		return newParallelXZ(f, im.XZ, runtime.GOMAXPROCS(0)), nil
	}
	// One block: nothing to parallelise.
	zr, err := xz.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open image %s: %w: %w", im.Path, ErrFormat, err)
	}
	return &readCloser{Reader: zr, closers: []io.Closer{f}, path: im.Path}, nil
}

// parallelXZ decodes the blocks of an xz file on several goroutines and returns their output in
// order. Each block's output is handed over in chunks through a bounded channel, so memory stays
// within workers × (lookahead + dictionary) whatever the block size.
type parallelXZ struct {
	f       *os.File
	idx     *XZIndex
	chans   []chan []byte
	errs    []error
	cur     int
	buf     []byte
	pending []byte
	cancel  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

const xzChunk = 1 << 20

var xzChunkPool = sync.Pool{New: func() any { return make([]byte, xzChunk) }}

func newParallelXZ(f *os.File, idx *XZIndex, workers int) *parallelXZ {
	workers = max(1, min(workers, len(idx.Blocks)))
	const budget = 48 << 20 // bytes of decoded output buffered ahead of the reader
	p := &parallelXZ{f: f, idx: idx, chans: make([]chan []byte, len(idx.Blocks)), errs: make([]error, len(idx.Blocks)), cancel: make(chan struct{})}
	for i, b := range idx.Blocks {
		ahead := min(b.UncompressedSize, budget/int64(workers))
		p.chans[i] = make(chan []byte, max(1, int(ahead/xzChunk)))
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range idx.Blocks {
			select {
			case next <- i:
			case <-p.cancel:
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := range next {
				p.errs[i] = p.decodeBlock(i)
				close(p.chans[i])
			}
		}()
	}
	return p
}

func (p *parallelXZ) decodeBlock(i int) error {
	b := p.idx.Blocks[i]
	var h0 [1]byte
	if _, err := p.f.ReadAt(h0[:], b.Offset); err != nil {
		return err
	}
	hsize := (int64(h0[0]) + 1) * 4
	hdr := make([]byte, hsize)
	if _, err := p.f.ReadAt(hdr, b.Offset); err != nil {
		return err
	}
	if crc32.ChecksumIEEE(hdr[:hsize-4]) != binary.LittleEndian.Uint32(hdr[hsize-4:]) {
		return fmt.Errorf("%w: xz block %d: header checksum mismatch", ErrFormat, i)
	}
	flags := hdr[1]
	if flags&3 != 0 {
		return fmt.Errorf("%w: xz block %d uses filters other than LZMA2 (decode with the xz program)", ErrFormat, i)
	}
	pos := 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			_, n, err := readUvarint(hdr[pos:])
			if err != nil {
				return err
			}
			pos += n
		}
	}
	id, n, err := readUvarint(hdr[pos:])
	if err != nil {
		return err
	}
	pos += n
	psize, n, err := readUvarint(hdr[pos:])
	if err != nil {
		return err
	}
	pos += n
	if id != 0x21 || psize != 1 {
		return fmt.Errorf("%w: xz block %d: filter %#x is not LZMA2", ErrFormat, i, id)
	}
	bits := hdr[pos] & 0x3f
	if bits > 40 {
		return fmt.Errorf("%w: xz block %d: bad dictionary size", ErrFormat, i)
	}
	dict := int64(0xffffffff)
	if bits < 40 {
		dict = int64(2|(bits&1)) << (bits/2 + 11)
	}
	dict = max(dict, lzma.MinDictCap)
	checkSize := xzCheckSize(b.Check)
	compSize := b.UnpaddedSize - hsize - checkSize
	if compSize <= 0 {
		return fmt.Errorf("%w: xz block %d: bad size", ErrFormat, i)
	}
	dataOff := b.Offset + hsize
	cfg := lzma.Reader2Config{DictCap: int(min(dict, int64(lzma.MaxDictCap)))}
	zr, err := cfg.NewReader2(bufio.NewReaderSize(io.NewSectionReader(p.f, dataOff, compSize), 256<<10))
	if err != nil {
		return fmt.Errorf("%w: xz block %d: %w", ErrFormat, i, err)
	}
	var sum hash.Hash
	switch b.Check {
	case 1:
		sum = crc32.NewIEEE()
	case 4:
		sum = crc64.New(crc64Table)
	case 10:
		sum = sha256.New()
	}
	var total int64
	for {
		chunk := xzChunkPool.Get().([]byte)
		n, err := io.ReadFull(zr, chunk)
		if n > 0 {
			total += int64(n)
			if sum != nil {
				sum.Write(chunk[:n])
			}
			select {
			case p.chans[i] <- chunk[:n]:
			case <-p.cancel:
				return context.Canceled
			}
		} else {
			xzChunkPool.Put(chunk) //nolint:staticcheck // fixed-size byte slices
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: xz block %d: %w", ErrFormat, i, err)
		}
	}
	if total != b.UncompressedSize {
		return fmt.Errorf("%w: xz block %d decoded to %d bytes, the index says %d", ErrFormat, i, total, b.UncompressedSize)
	}
	if sum != nil {
		want := make([]byte, checkSize)
		if _, err := p.f.ReadAt(want, dataOff+((compSize+3)&^3)); err != nil {
			return err
		}
		got := sum.Sum(nil)
		if b.Check == 4 {
			binary.LittleEndian.PutUint64(got, sum.(hash.Hash64).Sum64())
		} else if b.Check == 1 {
			binary.LittleEndian.PutUint32(got, sum.(hash.Hash32).Sum32())
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%w: xz block %d: check mismatch (the file is corrupt)", ErrFormat, i)
		}
	}
	return nil
}

func (p *parallelXZ) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		if p.buf != nil {
			xzChunkPool.Put(p.buf[:cap(p.buf)]) //nolint:staticcheck
			p.buf = nil
		}
		if p.cur >= len(p.chans) {
			return 0, io.EOF
		}
		chunk, ok := <-p.chans[p.cur]
		if !ok {
			if err := p.errs[p.cur]; err != nil {
				return 0, fmt.Errorf("decompress %s: %w", p.f.Name(), err)
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

func (p *parallelXZ) Close() error {
	p.once.Do(func() {
		close(p.cancel)
		p.wg.Wait()
	})
	return p.f.Close()
}
