// Package pxz decodes xz files on several goroutines. The index at the end of each xz stream lists
// every block's compressed and uncompressed size, so the blocks that `xz -T` and dpkg-deb write can
// be decoded independently and handed back in order. Every block's header CRC, size and integrity
// check are verified; memory stays bounded whatever the block size. Blocks are decoded by
// github.com/xi2/xz, a port of XZ Embedded (LZMA2 and the BCJ filters).
package pxz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var (
	// ErrCorrupt: the data is not valid xz, or fails a checksum.
	ErrCorrupt = errors.New("corrupt xz data")
	// ErrTruncated: the data ends early.
	ErrTruncated = errors.New("xz data ends early")
)

// Index lists the blocks of an xz file, all streams in order.
type Index struct {
	Blocks []Block
}

// Block is one independently decodable block.
type Block struct {
	Offset           int64 // of the block header in the file
	UnpaddedSize     int64 // header + compressed data + check
	UncompressedSize int64
	Check            byte // the stream's check type
}

// UncompressedSize is the size of the decompressed data.
func (x *Index) UncompressedSize() int64 {
	var n int64
	for _, b := range x.Blocks {
		n += b.UncompressedSize
	}
	return n
}

func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, fmt.Errorf("%w: bad integer in an index or block header", ErrCorrupt)
	}
	return v, n, nil
}

// ReadIndex reads the indexes of every stream in an xz file of the given size, walking back from
// the end over stream padding. A file without a valid footer (cut off, or not xz) is ErrCorrupt.
func ReadIndex(r io.ReaderAt, size int64) (*Index, error) {
	var streams [][]Block
	end := size
	for end > 0 {
		var foot [12]byte
		if end < 24 {
			return nil, fmt.Errorf("%w: no complete stream (the file may be cut off)", ErrCorrupt)
		}
		if _, err := r.ReadAt(foot[:], end-12); err != nil {
			return nil, err
		}
		if bytes.Equal(foot[8:], []byte{0, 0, 0, 0}) { // stream padding
			end -= 4
			continue
		}
		if foot[10] != 'Y' || foot[11] != 'Z' || crc32.ChecksumIEEE(foot[4:10]) != binary.LittleEndian.Uint32(foot[:4]) {
			return nil, fmt.Errorf("%w: no stream footer at byte %d (the file may be cut off)", ErrCorrupt, end-12)
		}
		check := foot[9] & 0x0f
		indexSize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
		indexOff := end - 12 - indexSize
		if indexOff < 12 || indexSize > 64<<20 {
			return nil, fmt.Errorf("%w: bad index size", ErrCorrupt)
		}
		idx := make([]byte, indexSize)
		if _, err := r.ReadAt(idx, indexOff); err != nil {
			return nil, err
		}
		if idx[0] != 0 || crc32.ChecksumIEEE(idx[:indexSize-4]) != binary.LittleEndian.Uint32(idx[indexSize-4:]) {
			return nil, fmt.Errorf("%w: index checksum mismatch", ErrCorrupt)
		}
		count, pos, err := readUvarint(idx[1:])
		if err != nil {
			return nil, err
		}
		if count > uint64(indexSize) {
			return nil, fmt.Errorf("%w: index lists more blocks than it can hold", ErrCorrupt)
		}
		pos++
		blocks := make([]Block, 0, count)
		var total int64
		for range count {
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
			if unpadded > uint64(size) || usize > 1<<62 {
				return nil, fmt.Errorf("%w: block size out of range", ErrCorrupt)
			}
			blocks = append(blocks, Block{UnpaddedSize: int64(unpadded), UncompressedSize: int64(usize), Check: check})
			total += (int64(unpadded) + 3) &^ 3
		}
		streamStart := indexOff - total - 12
		if streamStart < 0 {
			return nil, fmt.Errorf("%w: the index does not fit the file", ErrCorrupt)
		}
		var head [12]byte
		if _, err := r.ReadAt(head[:], streamStart); err != nil {
			return nil, err
		}
		if !bytes.Equal(head[:6], []byte{0xfd, '7', 'z', 'X', 'Z', 0}) || !bytes.Equal(head[6:8], foot[8:10]) {
			return nil, fmt.Errorf("%w: the stream header at byte %d does not match its footer", ErrCorrupt, streamStart)
		}
		off := streamStart + 12
		for i := range blocks {
			blocks[i].Offset = off
			off += (blocks[i].UnpaddedSize + 3) &^ 3
		}
		streams = append(streams, blocks)
		end = streamStart
	}
	x := &Index{}
	var usize int64
	for i := len(streams) - 1; i >= 0; i-- {
		for _, b := range streams[i] {
			if usize += b.UncompressedSize; usize > 1<<62 {
				return nil, fmt.Errorf("%w: the blocks add up to more than 4 EiB", ErrCorrupt)
			}
		}
		x.Blocks = append(x.Blocks, streams[i]...)
	}
	return x, nil
}
