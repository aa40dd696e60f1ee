// Package cpio writes "newc" (SVR4, magic 070701) cpio archives, the format the Linux kernel
// unpacks as an initramfs.
//
// The writer is deterministic: entries are written in the order given (callers sort), every entry
// carries the same modification time, inode numbers are assigned sequentially from 1 and the device
// fields of the archive's own filesystem are zero. Two archives of the same entries are
// byte-identical. Hard links are not produced: every regular file has its own inode and nlink 1, so
// the kernel's hard-link detection (which keys on inode numbers of files with nlink ≥ 2) never fires.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Mode bits of the newc header (from <sys/stat.h>).
const (
	modeFIFO   = 0o010000
	modeChar   = 0o020000
	modeDir    = 0o040000
	modeBlock  = 0o060000
	modeReg    = 0o100000
	modeLink   = 0o120000
	modeSocket = 0o140000
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
)

const (
	magic      = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
	maxSize    = 1<<32 - 1
)

// ErrClosed is returned by a Writer after Close.
var ErrClosed = errors.New("cpio: archive already closed")

// Entry is one archive member.
type Entry struct {
	// Name is the path inside the archive, relative, without a leading "/" (a leading "/" or "./"
	// is removed). "" and "." (the root itself) are rejected: the kernel's rootfs already exists.
	Name string
	// Mode holds the permission bits and the type bits (fs.ModeDir, fs.ModeSymlink,
	// fs.ModeDevice, fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket; none = regular file)
	// plus fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky.
	Mode     fs.FileMode
	UID, GID uint32
	// NLink is the link count; 0 means 1 for files and 2 for directories. WriteAll computes
	// the right count for directories (2 + subdirectories).
	NLink uint32
	// Data is the content of a regular file.
	Data []byte
	// Linkname is the target of a symbolic link.
	Linkname string
	// Major and Minor are the device numbers of a character or block device node.
	Major, Minor uint32
}

// Writer writes a newc archive entry by entry. Close writes the trailer.
type Writer struct {
	w      io.Writer
	mtime  uint32
	ino    uint32
	off    int64
	closed bool
	hdr    [headerSize]byte
}

// NewWriter returns a Writer on w that stamps every entry with mtime (seconds since the epoch,
// normally SOURCE_DATE_EPOCH). Negative or too large values are clamped to the 32-bit field.
func NewWriter(w io.Writer, mtime int64) *Writer {
	switch {
	case mtime < 0:
		mtime = 0
	case mtime > maxSize:
		mtime = maxSize
	}
	return &Writer{w: w, mtime: uint32(mtime)}
}

// Written is the number of bytes written so far.
func (w *Writer) Written() int64 { return w.off }

// WriteEntry appends one entry.
func (w *Writer) WriteEntry(e *Entry) error {
	if w.closed {
		return ErrClosed
	}
	name := cleanName(e.Name)
	if name == "" || name == "." || name == trailer || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("cpio: entry %q: invalid name", e.Name)
	}
	if strings.IndexByte(e.Linkname, 0) >= 0 {
		return fmt.Errorf("cpio: symlink %q: target contains a NUL byte", name)
	}
	mode, err := rawMode(e.Mode)
	if err != nil {
		return fmt.Errorf("cpio: entry %q: %w", name, err)
	}
	var body []byte
	var major, minor uint32
	nlink := e.NLink
	switch mode & 0o170000 {
	case modeReg:
		body = e.Data
	case modeLink:
		if e.Linkname == "" {
			return fmt.Errorf("cpio: symlink %q: empty target", name)
		}
		body = []byte(e.Linkname)
	case modeDir:
		if nlink == 0 {
			nlink = 2
		}
	case modeChar, modeBlock:
		major, minor = e.Major, e.Minor
	}
	if nlink == 0 {
		nlink = 1
	}
	if len(body) > maxSize {
		return fmt.Errorf("cpio: entry %q: %d bytes is more than newc's 4 GiB limit", name, len(body))
	}
	w.ino++
	return w.write(name, w.ino, mode, e.UID, e.GID, nlink, uint32(len(body)), major, minor, body)
}

// Close writes the TRAILER!!! entry. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.write(trailer, 0, 0, 0, 0, 1, 0, 0, 0, nil); err != nil {
		return err
	}
	w.closed = true
	return nil
}

var zeros [4]byte

func pad4(n int64) int64 { return (4 - n%4) % 4 }

func (w *Writer) write(name string, ino, mode, uid, gid, nlink, size, major, minor uint32, body []byte) error {
	h := w.hdr[:]
	copy(h, magic)
	fields := [...]uint32{ino, mode, uid, gid, nlink, w.mtime, size, 0, 0, major, minor,
		uint32(len(name) + 1), 0}
	for i, v := range fields {
		putHex(h[6+8*i:6+8*i+8], v)
	}
	if err := w.out(h); err != nil {
		return err
	}
	if err := w.out([]byte(name)); err != nil {
		return err
	}
	if err := w.out(zeros[:1+pad4(w.off+1)]); err != nil { // NUL + pad header+name to 4
		return err
	}
	if len(body) == 0 {
		return nil
	}
	if err := w.out(body); err != nil {
		return err
	}
	return w.out(zeros[:pad4(w.off)])
}

func (w *Writer) out(b []byte) error {
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: write: %w", err)
	}
	return nil
}

const hexDigits = "0123456789abcdef"

func putHex(b []byte, v uint32) {
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func cleanName(name string) string {
	for {
		switch {
		case strings.HasPrefix(name, "/"):
			name = name[1:]
		case strings.HasPrefix(name, "./"):
			name = name[2:]
		default:
			return name
		}
	}
}

// UnixMode converts an fs.FileMode to the st_mode value of <sys/stat.h> (type, permission,
// setuid, setgid and sticky bits), as stored in the newc header and other Unix filesystems.
func UnixMode(m fs.FileMode) (uint32, error) { return rawMode(m) }

// rawMode converts an fs.FileMode to the st_mode value stored in the header.
func rawMode(m fs.FileMode) (uint32, error) {
	v := uint32(m.Perm())
	switch m.Type() {
	case 0:
		v |= modeReg
	case fs.ModeDir:
		v |= modeDir
	case fs.ModeSymlink:
		v |= modeLink
	case fs.ModeDevice | fs.ModeCharDevice:
		v |= modeChar
	case fs.ModeDevice:
		v |= modeBlock
	case fs.ModeNamedPipe:
		v |= modeFIFO
	case fs.ModeSocket:
		v |= modeSocket
	default:
		return 0, fmt.Errorf("unsupported file type %v", m.Type())
	}
	if m&fs.ModeSetuid != 0 {
		v |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		v |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		v |= modeSticky
	}
	return v, nil
}

// WriteAll writes entries followed by the trailer to w, all stamped with mtime. Directory link
// counts are computed from the list (2 + the number of direct subdirectories) unless an entry sets
// NLink itself. It returns the number of bytes written.
func WriteAll(w io.Writer, entries []Entry, mtime int64) (int64, error) {
	subdirs := make(map[string]uint32)
	for i := range entries {
		if entries[i].Mode.IsDir() {
			subdirs[parentOf(cleanName(entries[i].Name))]++
		}
	}
	cw := NewWriter(w, mtime)
	for i := range entries {
		e := entries[i]
		if e.Mode.IsDir() && e.NLink == 0 {
			e.NLink = 2 + subdirs[cleanName(e.Name)]
		}
		if err := cw.WriteEntry(&e); err != nil {
			return cw.Written(), err
		}
	}
	err := cw.Close()
	return cw.Written(), err
}

func parentOf(name string) string {
	name = strings.TrimSuffix(name, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return ""
}
