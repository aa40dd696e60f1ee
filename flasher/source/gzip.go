package source

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/pgzip"
)

// gzipReader decodes gzip members one at a time with pgzip (parallel inflate) and checks each
// member's trailer itself: pgzip reports a file cut off right before a trailer as a clean end.
type gzipReader struct {
	z    *pgzip.Reader
	in   *trailerTap
	crc  uint32
	size uint32
	err  error
}

func newGzipReader(r io.Reader) (*gzipReader, error) {
	in := &trailerTap{r: bufio.NewReaderSize(r, 1<<20)}
	z, err := pgzip.NewReaderN(in, 1<<20, 8)
	if err != nil {
		return nil, err
	}
	z.Multistream(false)
	return &gzipReader{z: z, in: in}, nil
}

func (g *gzipReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for {
		n, err := g.z.Read(p)
		g.crc = crc32.Update(g.crc, crc32.IEEETable, p[:n])
		g.size += uint32(n)
		if err != io.EOF {
			return n, err
		}
		// The end of a member: its trailer is the last thing pgzip read with Read.
		if g.in.n < 8 || binary.LittleEndian.Uint32(g.in.last[0:4]) != g.crc || binary.LittleEndian.Uint32(g.in.last[4:8]) != g.size {
			g.err = fmt.Errorf("gzip: the data ends without its trailer: %w", io.ErrUnexpectedEOF)
			return n, g.err
		}
		g.crc, g.size = 0, 0
		if _, perr := g.in.r.Peek(1); perr == io.EOF {
			g.err = io.EOF
			return n, io.EOF
		}
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

// trailerTap passes reads through and keeps the last 8 bytes returned by Read (not ReadByte, which
// the inflater uses): after a member, they are the trailer pgzip read.
type trailerTap struct {
	r    *bufio.Reader
	last [8]byte
	n    int
}

func (t *trailerTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= 8 {
		copy(t.last[:], p[n-8:n])
	} else {
		copy(t.last[:], t.last[n:])
		copy(t.last[8-n:], p[:n])
	}
	t.n += n
	return n, err
}

func (t *trailerTap) ReadByte() (byte, error) { return t.r.ReadByte() }
