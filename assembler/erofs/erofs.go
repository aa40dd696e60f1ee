// Package erofs writes uncompressed EROFS images (the read-only filesystem of Linux ≥ 5.4) from an
// in-memory file list, on any host OS: no mkfs, no root, no files staged on the host.
//
// The image has 4 KiB blocks: block 0 holds the superblock, the inodes follow in the metadata
// area (compact 32-byte inodes, extended 64-byte ones only when an id, size or link count needs
// them), each with its data's last partial block inline behind it (tail packing), then the full
// data blocks. No compression, no xattrs, no hard links. Timestamps are the superblock's build
// time (compact inodes carry none), so the same files and time give the same bytes.
package erofs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/kilnproject/kiln/assembler/cpio"
)

// BlockSize is the image's block size: the page size the kernel requires on amd64 and arm64.
const BlockSize = 4096

const (
	magic        = 0xE0F5E1E2
	superOffset  = 1024
	slotSize     = 32 // inode slot: nid = offset in the metadata area / 32
	compactSize  = 32
	extendedSize = 64
	direntSize   = 12
	metaBlkAddr  = 1

	layoutPlain  = 0 // data in consecutive blocks at raw_blkaddr
	layoutInline = 2 // full blocks at raw_blkaddr, the tail right after the inode
)

// File is one entry. Parent directories that are not listed are created (0755, root).
type File struct {
	Path         string      // slash-separated, with or without a leading "/"; "" or "/" is the root
	Mode         fs.FileMode // type and permission bits
	Data         []byte      // regular file contents
	Target       string      // symlink target
	Major, Minor uint32      // device numbers
	UID, GID     uint32
}

// ErrInvalid: the file list cannot be written (bad path, a file where a directory is needed, an
// unsupported type).
var ErrInvalid = errors.New("invalid file list")

// Result describes a written image.
type Result struct {
	Size   int64  // bytes written: a multiple of BlockSize
	Inodes int    // number of inodes
	UUID   string // the filesystem UUID, derived from the content
}

type node struct {
	f        File
	name     string
	children []*node // sorted by name
	parent   *node

	mode    uint32
	size    uint64
	nlink   uint32
	ext     bool   // extended inode
	layout  int    // layoutPlain or layoutInline
	nid     uint64 // slot in the metadata area
	blkaddr uint32 // first data block
	data    []byte // directory contents (generated) or file/symlink data
}

func (n *node) isize() int {
	if n.ext {
		return extendedSize
	}
	return compactSize
}

// Write writes the image of files to w. mtime (seconds since 1970) is every file's timestamp.
// It checks ctx between files.
func Write(ctx context.Context, w io.Writer, files []File, mtime int64) (*Result, error) {
	root, nodes, err := buildTree(files)
	if err != nil {
		return nil, err
	}
	// Directory contents depend only on names: fix every size first.
	for _, n := range nodes {
		if n.f.Mode.IsDir() {
			n.size = uint64(dirSize(n))
		}
	}
	// Metadata layout: inodes in tree order (root first, nid 0), each with its inline tail.
	var off uint64
	for _, n := range nodes {
		n.ext = n.f.UID > 0xffff || n.f.GID > 0xffff || n.size > 0xffffffff || n.nlink > 0xffff
		tail := n.size % BlockSize
		n.layout = layoutPlain
		if tail > 0 && uint64(n.isize())+tail <= BlockSize && n.f.Mode.Type()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) == 0 {
			n.layout = layoutInline
		}
		need := uint64(n.isize())
		if n.layout == layoutInline {
			need += tail
		}
		if off%BlockSize+need > BlockSize { // inode and inline tail must not cross a block
			off = (off + BlockSize - 1) / BlockSize * BlockSize
		}
		n.nid = off / slotSize
		off = (off + need + slotSize - 1) / slotSize * slotSize
	}
	if root.nid != 0 {
		return nil, fmt.Errorf("erofs: %w: root inode not first", ErrInvalid)
	}
	metaBlocks := (off + BlockSize - 1) / BlockSize
	blk := uint64(metaBlkAddr) + metaBlocks
	for _, n := range nodes {
		full := n.size / BlockSize
		if n.layout == layoutPlain && n.size%BlockSize != 0 {
			full++
		}
		if full > 0 {
			n.blkaddr = uint32(blk)
			blk += full
		}
	}
	if blk > 0xffffffff {
		return nil, fmt.Errorf("erofs: %w: image over 16 TiB", ErrInvalid)
	}
	for _, n := range nodes {
		if n.f.Mode.IsDir() {
			n.data = dirData(n)
		}
	}

	// Content hash → UUID: the same tree gives the same UUID.
	h := sha256.New()
	for _, n := range nodes {
		fmt.Fprintf(h, "%s\x00%o %d %d %d %d %d\x00", n.f.Path, n.mode, n.f.UID, n.f.GID, n.size, n.f.Major, n.f.Minor)
		h.Write(n.data)
	}
	fmt.Fprintf(h, "%d", mtime)
	var uuid [16]byte
	copy(uuid[:], h.Sum(nil))
	uuid[6] = uuid[6]&0x0f | 0x40 // version 4 layout, content-derived
	uuid[8] = uuid[8]&0x3f | 0x80

	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}

	// Block 0: the superblock at 1024.
	sb := make([]byte, BlockSize)
	le := binary.LittleEndian
	s := sb[superOffset:]
	le.PutUint32(s[0:], magic)
	s[12] = 12 // blkszbits
	le.PutUint16(s[14:], uint16(root.nid))
	le.PutUint64(s[16:], uint64(len(nodes)))
	le.PutUint64(s[24:], uint64(mtime))
	le.PutUint32(s[36:], uint32(blk))
	le.PutUint32(s[40:], metaBlkAddr)
	copy(s[48:64], uuid[:])
	copy(s[64:80], "kiln-root")
	if _, err := cw.Write(sb); err != nil {
		return nil, fmt.Errorf("erofs: write: %w", err)
	}

	// Metadata area.
	pos := uint64(0)
	var ino [extendedSize]byte
	for i, n := range nodes {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		start := n.nid * slotSize
		if err := cw.zeros(start - pos); err != nil {
			return nil, err
		}
		b := ino[:n.isize()]
		clear(b)
		format := uint16(n.layout << 1)
		if n.ext {
			format |= 1
		}
		le.PutUint16(b[0:], format)
		le.PutUint16(b[4:], uint16(n.mode))
		var u uint32
		switch n.f.Mode.Type() {
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			u = n.f.Minor&0xff | n.f.Major<<8 | (n.f.Minor&^0xff)<<12
		default:
			u = n.blkaddr
		}
		inum := uint32(i + 1)
		if n.ext {
			le.PutUint64(b[8:], n.size)
			le.PutUint32(b[16:], u)
			le.PutUint32(b[20:], inum)
			le.PutUint32(b[24:], n.f.UID)
			le.PutUint32(b[28:], n.f.GID)
			le.PutUint64(b[32:], uint64(mtime))
			le.PutUint32(b[44:], n.nlink)
		} else {
			le.PutUint16(b[6:], uint16(n.nlink))
			le.PutUint32(b[8:], uint32(n.size))
			le.PutUint32(b[16:], u)
			le.PutUint32(b[20:], inum)
			le.PutUint16(b[24:], uint16(n.f.UID))
			le.PutUint16(b[26:], uint16(n.f.GID))
		}
		if _, err := cw.Write(b); err != nil {
			return nil, fmt.Errorf("erofs: write: %w", err)
		}
		pos = start + uint64(len(b))
		if n.layout == layoutInline {
			tail := n.data[n.size/BlockSize*BlockSize:]
			if _, err := cw.Write(tail); err != nil {
				return nil, fmt.Errorf("erofs: write: %w", err)
			}
			pos += uint64(len(tail))
		}
	}
	if err := cw.zeros(metaBlocks*BlockSize - pos); err != nil {
		return nil, err
	}

	// Data blocks, in inode order.
	for i, n := range nodes {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if n.blkaddr == 0 {
			continue
		}
		d := n.data
		if n.layout == layoutInline {
			d = d[:n.size/BlockSize*BlockSize]
		}
		if _, err := cw.Write(d); err != nil {
			return nil, fmt.Errorf("erofs: write: %w", err)
		}
		if r := uint64(len(d)) % BlockSize; r != 0 {
			if err := cw.zeros(BlockSize - r); err != nil {
				return nil, err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("erofs: write: %w", err)
	}
	if cw.n != int64(blk)*BlockSize {
		return nil, fmt.Errorf("erofs: internal error: wrote %d bytes, laid out %d blocks", cw.n, blk)
	}
	return &Result{Size: cw.n, Inodes: len(nodes), UUID: fmt.Sprintf("%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:])}, nil
}

// buildTree checks the list and returns the root and every node in metadata order (depth first,
// children by name).
func buildTree(files []File) (*node, []*node, error) {
	root := &node{f: File{Mode: fs.ModeDir | 0o755}}
	byPath := map[string]*node{"": root}
	var get func(p string) (*node, error)
	get = func(p string) (*node, error) {
		if n, ok := byPath[p]; ok {
			if !n.f.Mode.IsDir() {
				return nil, fmt.Errorf("erofs: %w: %s is not a directory", ErrInvalid, p)
			}
			return n, nil
		}
		parent, err := get(parentOf(p))
		if err != nil {
			return nil, err
		}
		n := &node{f: File{Path: p, Mode: fs.ModeDir | 0o755}, name: path.Base(p), parent: parent}
		byPath[p] = n
		parent.children = append(parent.children, n)
		return n, nil
	}
	for _, f := range files {
		p := strings.Trim(f.Path, "/")
		if p != "" && (path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == "..") {
			return nil, nil, fmt.Errorf("erofs: %w: path %q is not clean", ErrInvalid, f.Path)
		}
		f.Path = p
		switch f.Mode.Type() {
		case 0, fs.ModeDir, fs.ModeSymlink, fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket:
		default:
			return nil, nil, fmt.Errorf("erofs: %w: %s: unsupported type %v", ErrInvalid, p, f.Mode.Type())
		}
		if f.Mode.Type() == fs.ModeSymlink && (f.Target == "" || len(f.Target) > BlockSize-extendedSize) {
			return nil, nil, fmt.Errorf("erofs: %w: %s: symlink target empty or over %d bytes", ErrInvalid, p, BlockSize-extendedSize)
		}
		if len(path.Base(p)) > 255 {
			return nil, nil, fmt.Errorf("erofs: %w: %s: name over 255 bytes", ErrInvalid, p)
		}
		if old, ok := byPath[p]; ok {
			if !old.f.Mode.IsDir() || !f.Mode.IsDir() {
				return nil, nil, fmt.Errorf("erofs: %w: %s listed twice", ErrInvalid, p)
			}
			old.f = f // a listed directory sets the mode and owner of one made as a parent
			continue
		}
		parent, err := get(parentOf(p))
		if err != nil {
			return nil, nil, err
		}
		n := &node{f: f, name: path.Base(p), parent: parent}
		byPath[p] = n
		parent.children = append(parent.children, n)
	}
	var nodes []*node
	var walk func(n *node) error
	walk = func(n *node) error {
		m, err := cpio.UnixMode(n.f.Mode)
		if err != nil {
			return fmt.Errorf("erofs: %w: %s: %v", ErrInvalid, n.f.Path, err)
		}
		n.mode = m
		n.nlink = 1
		switch n.f.Mode.Type() {
		case 0:
			n.data, n.size = n.f.Data, uint64(len(n.f.Data))
		case fs.ModeSymlink:
			n.data, n.size = []byte(n.f.Target), uint64(len(n.f.Target))
		}
		nodes = append(nodes, n)
		sort.Slice(n.children, func(i, j int) bool { return n.children[i].name < n.children[j].name })
		if n.f.Mode.IsDir() {
			n.nlink = 2
			for _, c := range n.children {
				if c.f.Mode.IsDir() {
					n.nlink++
				}
			}
		}
		for _, c := range n.children {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, nil, err
	}
	return root, nodes, nil
}

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// dirent is one directory entry: "." and ".." are sorted in with the rest.
type dirent struct {
	name string
	n    *node
}

func entries(n *node) []dirent {
	parent := n.parent
	if parent == nil {
		parent = n
	}
	es := make([]dirent, 0, len(n.children)+2)
	es = append(es, dirent{".", n}, dirent{"..", parent})
	for _, c := range n.children {
		es = append(es, dirent{c.name, c})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es
}

// dirBlocks splits the entries into blocks: dirents first, then their names, never across a block.
func dirBlocks(es []dirent) [][]dirent {
	var blocks [][]dirent
	var cur []dirent
	used := 0
	for _, e := range es {
		need := direntSize + len(e.name)
		if used+need > BlockSize {
			blocks = append(blocks, cur)
			cur, used = nil, 0
		}
		cur = append(cur, e)
		used += need
	}
	return append(blocks, cur)
}

func blockLen(b []dirent) int {
	l := 0
	for _, e := range b {
		l += direntSize + len(e.name)
	}
	return l
}

func dirSize(n *node) int {
	bs := dirBlocks(entries(n))
	return (len(bs)-1)*BlockSize + blockLen(bs[len(bs)-1])
}

func dirData(n *node) []byte {
	bs := dirBlocks(entries(n))
	out := make([]byte, 0, (len(bs)-1)*BlockSize+blockLen(bs[len(bs)-1]))
	le := binary.LittleEndian
	for i, b := range bs {
		blk := make([]byte, blockLen(b))
		nameoff := direntSize * len(b)
		for j, e := range b {
			d := blk[j*direntSize:]
			le.PutUint64(d[0:], e.n.nid)
			le.PutUint16(d[8:], uint16(nameoff))
			d[10] = fileType(e.n.f.Mode)
			nameoff += copy(blk[nameoff:], e.name)
		}
		out = append(out, blk...)
		if i < len(bs)-1 {
			out = append(out, make([]byte, BlockSize-len(blk))...)
		}
	}
	return out
}

func fileType(m fs.FileMode) byte {
	switch m.Type() {
	case 0:
		return 1
	case fs.ModeDir:
		return 2
	case fs.ModeDevice | fs.ModeCharDevice:
		return 3
	case fs.ModeDevice:
		return 4
	case fs.ModeNamedPipe:
		return 5
	case fs.ModeSocket:
		return 6
	case fs.ModeSymlink:
		return 7
	}
	return 0
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var zeroBlock [BlockSize]byte

func (c *countWriter) zeros(n uint64) error {
	for n > 0 {
		k := min(n, BlockSize)
		if _, err := c.Write(zeroBlock[:k]); err != nil {
			return fmt.Errorf("erofs: write: %w", err)
		}
		n -= k
	}
	return nil
}
