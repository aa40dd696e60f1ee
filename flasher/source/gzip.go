package source

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/pgzip"
)

// gzipReader decodes gzip members one at a time with pgzip (parallel inflate) and checks that the
// file ends with the last member's trailer: pgzip reports a file cut off right before a trailer as
// a clean end. (A member cut off before a later member is caught by pgzip's checksum.)
type gzipReader struct {
	z    *pgzip.Reader
	in   *bufio.Reader // a *bufio.Reader keeps the inflater on its fast path
	file io.ReaderAt
	size int64
	crc  uint32 // of the current member's data
	n    uint32 // its length modulo 4 GiB, as the trailer records it
	err  error
}

func newGzipReader(file io.ReaderAt, size int64) (*gzipReader, error) {
	in := bufio.NewReaderSize(io.NewSectionReader(file, 0, size), 1<<20)
	z, err := pgzip.NewReaderN(in, 1<<20, 8)
	if err != nil {
		return nil, err
	}
	z.Multistream(false)
	return &gzipReader{z: z, in: in, file: file, size: size}, nil
}

func (g *gzipReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for {
		n, err := g.z.Read(p)
		g.crc = crc32.Update(g.crc, crc32.IEEETable, p[:n])
		g.n += uint32(n)
		if err != io.EOF {
			return n, err
		}
		if _, perr := g.in.Peek(1); perr == io.EOF { // the last member: the file must end with its trailer
			var t [8]byte
			if _, err := g.file.ReadAt(t[:], g.size-8); err != nil || binary.LittleEndian.Uint32(t[:4]) != g.crc || binary.LittleEndian.Uint32(t[4:]) != g.n {
				g.err = fmt.Errorf("gzip: the data ends without its trailer: %w", io.ErrUnexpectedEOF)
				return n, g.err
			}
			g.err = io.EOF
			return n, io.EOF
		}
		g.crc, g.n = 0, 0
		if err := g.z.Reset(g.in); err != nil {
			g.err = err
			return n, err
		}
		g.z.Multistream(false)
		if n > 0 {
			return n, nil
		}
	}
}

func (g *gzipReader) Close() error { return g.z.Close() }
