// Package bmap reads and writes block maps in bmaptool's XML format (versions 1.x and 2.0): the list of
// block ranges of an image that hold data, each with a checksum, so a flasher can skip the rest and
// verify what it wrote.
package bmap

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
)

// Range is an inclusive run of mapped blocks with the hex checksum of its bytes (may be empty).
type Range struct {
	First, Last int64
	Checksum    string
}

// Map is a parsed block map.
type Map struct {
	ImageSize    int64
	BlockSize    int64
	ChecksumType string // "sha256", "sha512" or "sha1"
	Ranges       []Range
}

// Blocks is the number of blocks the image spans.
func (m *Map) Blocks() int64 {
	n := m.ImageSize / m.BlockSize
	if m.ImageSize%m.BlockSize != 0 {
		n++
	}
	return n
}

// Bounds returns the byte offset and length of r within the image (the last block may be partial).
func (m *Map) Bounds(r Range) (off, n int64) {
	off = r.First * m.BlockSize
	end := m.ImageSize
	if r.Last < m.Blocks()-1 {
		end = (r.Last + 1) * m.BlockSize // below ImageSize: no overflow
	}
	return off, end - off
}

// MappedBytes is the number of image bytes that the map says hold data.
func (m *Map) MappedBytes() int64 {
	var n int64
	for _, r := range m.Ranges {
		_, l := m.Bounds(r)
		n += l
	}
	return n
}

// NewHash returns a hash of the map's checksum type.
func (m *Map) NewHash() (hash.Hash, error) { return newHash(m.ChecksumType) }

func newHash(kind string) (hash.Hash, error) {
	switch strings.ToLower(kind) {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha1":
		return sha1.New(), nil
	}
	return nil, fmt.Errorf("bmap: unsupported checksum type %q (want sha256, sha512 or sha1)", kind)
}

type xmlRange struct {
	Chksum string `xml:"chksum,attr"`
	SHA1   string `xml:"sha1,attr"`
	Text   string `xml:",chardata"`
}

type xmlMap struct {
	Version      string     `xml:"version,attr"`
	ImageSize    string     `xml:"ImageSize"`
	BlockSize    string     `xml:"BlockSize"`
	BlocksCount  string     `xml:"BlocksCount"`
	ChecksumType string     `xml:"ChecksumType"`
	FileChecksum string     `xml:"BmapFileChecksum"`
	FileSHA1     string     `xml:"BmapFileSHA1"`
	Ranges       []xmlRange `xml:"BlockMap>Range"`
}

// ErrChecksum is returned when the bmap file's own checksum does not match its contents.
var ErrChecksum = errors.New("bmap: file checksum mismatch (the .bmap file is corrupt or was edited)")

// Parse reads a block map and checks its own checksum when it carries one.
func Parse(data []byte) (*Map, error) {
	var x xmlMap
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("bmap: not a bmaptool block map: %w", err)
	}
	major, _, _ := strings.Cut(strings.TrimSpace(x.Version), ".")
	if major != "1" && major != "2" {
		return nil, fmt.Errorf("bmap: format version %q is not supported (supports 1.x and 2.x)", x.Version)
	}
	m := &Map{ChecksumType: strings.TrimSpace(x.ChecksumType)}
	var err error
	if m.ImageSize, err = num("ImageSize", x.ImageSize); err != nil {
		return nil, err
	}
	if m.BlockSize, err = num("BlockSize", x.BlockSize); err != nil {
		return nil, err
	}
	if m.BlockSize <= 0 || m.ImageSize < 0 {
		return nil, fmt.Errorf("bmap: bad ImageSize %d or BlockSize %d", m.ImageSize, m.BlockSize)
	}
	fileSum := strings.TrimSpace(x.FileChecksum)
	if m.ChecksumType == "" {
		m.ChecksumType, fileSum = "sha1", strings.TrimSpace(x.FileSHA1)
	}
	h, err := newHash(m.ChecksumType)
	if err != nil {
		return nil, err
	}
	m.ChecksumType = strings.ToLower(m.ChecksumType)
	if fileSum != "" {
		zeroed := bytes.Replace(data, []byte(fileSum), bytes.Repeat([]byte("0"), len(fileSum)), 1)
		h.Write(zeroed)
		if hex.EncodeToString(h.Sum(nil)) != strings.ToLower(fileSum) {
			return nil, ErrChecksum
		}
	}
	blocks := m.Blocks()
	prev := int64(-1)
	for _, xr := range x.Ranges {
		r := Range{Checksum: strings.TrimSpace(xr.Chksum)}
		if r.Checksum == "" {
			r.Checksum = strings.TrimSpace(xr.SHA1)
		}
		if r.Checksum != "" {
			if b, err := hex.DecodeString(r.Checksum); err != nil || len(b) != h.Size() {
				return nil, fmt.Errorf("bmap: range %s has a malformed %s checksum %q", strings.TrimSpace(xr.Text), m.ChecksumType, r.Checksum)
			}
			r.Checksum = strings.ToLower(r.Checksum)
		}
		a, b, isRange := strings.Cut(strings.TrimSpace(xr.Text), "-")
		if r.First, err = num("Range", a); err != nil {
			return nil, err
		}
		r.Last = r.First
		if isRange {
			if r.Last, err = num("Range", b); err != nil {
				return nil, err
			}
		}
		if r.First <= prev || r.Last < r.First || r.Last >= blocks {
			return nil, fmt.Errorf("bmap: range %s is out of order or outside the image's %d blocks", strings.TrimSpace(xr.Text), blocks)
		}
		prev = r.Last
		m.Ranges = append(m.Ranges, r)
	}
	return m, nil
}

// MaxFileSize bounds the .bmap files Load reads: a real map lists ranges in a few bytes each, so
// even a terabyte image's map is far smaller.
const MaxFileSize = 64 << 20

// Load reads and parses a .bmap file.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("bmap: %s is larger than %d MiB: not a block map; give the right one with --bmap or pass --no-bmap", path, MaxFileSize>>20)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func num(field, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bmap: bad %s %q", field, strings.TrimSpace(s))
	}
	return n, nil
}

// Marshal renders m in bmaptool's version 2.0 layout, with the file checksum filled in.
func (m *Map) Marshal() ([]byte, error) {
	h, err := m.NewHash()
	if err != nil {
		return nil, err
	}
	var mapped int64
	for _, r := range m.Ranges {
		mapped += r.Last - r.First + 1
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\" ?>\n<!-- Block map of an image: the ranges of blocks that hold data, with their checksums.\n")
	fmt.Fprintf(&b, "     Flash it with 'kiln flash' or 'bmaptool copy'. -->\n<bmap version=\"2.0\">\n")
	fmt.Fprintf(&b, "    <ImageSize> %d </ImageSize>\n    <BlockSize> %d </BlockSize>\n", m.ImageSize, m.BlockSize)
	fmt.Fprintf(&b, "    <BlocksCount> %d </BlocksCount>\n    <MappedBlocksCount> %d </MappedBlocksCount>\n", m.Blocks(), mapped)
	fmt.Fprintf(&b, "    <ChecksumType> %s </ChecksumType>\n    <BmapFileChecksum> ", m.ChecksumType)
	sumAt := b.Len()
	fmt.Fprintf(&b, "%s </BmapFileChecksum>\n    <BlockMap>\n", strings.Repeat("0", h.Size()*2))
	for _, r := range m.Ranges {
		attr := ""
		if r.Checksum != "" {
			attr = fmt.Sprintf(" chksum=\"%s\"", r.Checksum)
		}
		if r.First == r.Last {
			fmt.Fprintf(&b, "        <Range%s> %d </Range>\n", attr, r.First)
		} else {
			fmt.Fprintf(&b, "        <Range%s> %d-%d </Range>\n", attr, r.First, r.Last)
		}
	}
	b.WriteString("    </BlockMap>\n</bmap>\n")
	out := b.Bytes()
	h.Write(out)
	copy(out[sumAt:], hex.EncodeToString(h.Sum(nil)))
	return out, nil
}

// Create maps the data extents of an image file (found with SEEK_DATA/SEEK_HOLE, so the file should be
// sparse) into blocks of blockSize and checksums each range with sha256.
func Create(f *os.File, blockSize int64) (*Map, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	extents, err := dataExtents(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("bmap: %s: %w", f.Name(), err)
	}
	return FromExtents(f, blockSize, extents)
}

// FromExtents maps the [start, end) byte ranges of f that hold data (sorted, as Recorder.Written
// gives them) into blocks of blockSize and checksums each range with sha256.
func FromExtents(f *os.File, blockSize int64, extents [][2]int64) (*Map, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	m := &Map{ImageSize: st.Size(), BlockSize: blockSize, ChecksumType: "sha256"}
	for _, e := range extents {
		if e[0] >= e[1] || e[0] < 0 || e[1] > st.Size() {
			return nil, fmt.Errorf("bmap: %s: data range [%d, %d) outside the %d-byte image", f.Name(), e[0], e[1], st.Size())
		}
		first, last := e[0]/blockSize, (e[1]-1)/blockSize
		if n := len(m.Ranges); n > 0 && m.Ranges[n-1].Last >= first-1 {
			m.Ranges[n-1].Last = max(m.Ranges[n-1].Last, last)
			continue
		}
		m.Ranges = append(m.Ranges, Range{First: first, Last: last})
	}
	buf := make([]byte, 1<<20)
	for i := range m.Ranges {
		off, n := m.Bounds(m.Ranges[i])
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, off, n), buf); err != nil {
			return nil, fmt.Errorf("bmap: %s: %w", f.Name(), err)
		}
		m.Ranges[i].Checksum = hex.EncodeToString(h.Sum(nil))
	}
	return m, nil
}
