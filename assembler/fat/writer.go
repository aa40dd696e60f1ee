package fat

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/kilnproject/kiln/internal/progress"
)

const (
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLongName  = 0x0F

	endOfChain = 0x0FFFFFFF
	mediaFixed = 0xF8

	bufSize = 4 << 20 // bytes gathered per write
)

var noLabel = shortName{'N', 'O', ' ', 'N', 'A', 'M', 'E', ' ', ' ', ' ', ' '}

// volumeLabel validates and normalises a label: upper case, 8.3 characters or spaces, at most 11.
func volumeLabel(s string) (shortName, error) {
	if s == "" {
		return noLabel, nil
	}
	if len(s) > 11 {
		return noLabel, fmt.Errorf("volume label %q is longer than 11 characters", s)
	}
	var l shortName
	for i := range l {
		l[i] = ' '
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != ' ' && !shortChar(c) || c >= 0x80 || i == 0 && c == ' ' {
			return noLabel, fmt.Errorf("volume label %q: use letters, digits, spaces and $%%'-_@~`!(){}^#& only", s)
		}
		l[i] = c
	}
	if l == noLabel {
		return noLabel, fmt.Errorf("volume label %q is reserved for volumes without a label", s)
	}
	return l, nil
}

// stamp is a FAT date and time.
type stamp struct {
	date, time uint16
	tenths     byte // 10 ms units added to time, 0–199
}

func dosStamp(t time.Time) stamp {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	return stamp{
		date:   uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		time:   uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2),
		tenths: byte(t.Second()%2*100 + t.Nanosecond()/10_000_000),
	}
}

// volumeWriter streams the volume at base through a buffer, front to back.
type volumeWriter struct {
	ctx   context.Context
	w     io.WriterAt
	base  int64 // volume offset in w
	pos   int64 // volume offset of buf[0]
	buf   []byte
	prog  progress.Func
	done  int64 // data-area bytes flushed
	total int64 // data-area bytes to write
	data  bool  // buf holds data-area bytes
}

func (v *volumeWriter) flush() error {
	if len(v.buf) == 0 {
		return nil
	}
	err := v.writeAt(v.buf)
	v.buf = v.buf[:0]
	return err
}

func (v *volumeWriter) writeAt(p []byte) error {
	if err := v.ctx.Err(); err != nil {
		return err
	}
	if _, err := v.w.WriteAt(p, v.base+v.pos); err != nil {
		return fmt.Errorf("fat: write at volume offset %d: %w", v.pos, err)
	}
	v.pos += int64(len(p))
	if v.data {
		v.done += int64(len(p))
		v.prog.Report(progress.Event{Phase: "fat", Done: v.done, Total: v.total})
	}
	return nil
}

// seek flushes and moves to a volume offset; what is skipped stays unwritten.
func (v *volumeWriter) seek(off int64) error {
	if err := v.flush(); err != nil {
		return err
	}
	v.pos = off
	return nil
}

func (v *volumeWriter) write(p []byte) error {
	if v.buf == nil {
		v.buf = make([]byte, 0, bufSize)
	}
	for len(p) > 0 {
		if len(v.buf) == 0 && len(p) >= bufSize {
			// Large contents go out straight from the caller's memory, in bufSize pieces so that
			// cancellation and progress stay responsive.
			if err := v.writeAt(p[:bufSize]); err != nil {
				return err
			}
			p = p[bufSize:]
			continue
		}
		n := copy(v.buf[len(v.buf):cap(v.buf)], p)
		v.buf = v.buf[:len(v.buf)+n]
		p = p[n:]
		if len(v.buf) == cap(v.buf) {
			if err := v.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// pad writes n zero bytes.
func (v *volumeWriter) pad(n int64) error {
	var zero [4096]byte
	for n > 0 {
		k := min(n, int64(len(zero)))
		if err := v.write(zero[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// writeReserved writes the boot sector, the FSInfo sector and their backups (sectors 0, 1, 6, 7).
func (v *volumeWriter) writeReserved(g geometry, label shortName, opt Options, next uint32) error {
	b := make([]byte, 8*sectorSize)
	bs := b[:sectorSize]
	copy(bs[0:], []byte{0xEB, 0x58, 0x90}) // jump over the BPB to the boot code
	copy(bs[3:11], "MSWIN4.1")             // the OEM name FAT drivers are most at ease with
	binary.LittleEndian.PutUint16(bs[11:], sectorSize)
	bs[13] = byte(g.spc)
	binary.LittleEndian.PutUint16(bs[14:], uint16(g.reserved))
	bs[16] = numFATs
	bs[21] = mediaFixed
	// CHS geometry is unused by modern systems; 32 sectors × 64 heads is what mkfs.fat writes for
	// images, and mtools wants the sector count to be a multiple of sectors per track.
	spt, heads := uint16(32), uint16(64)
	if g.totalSectors%32 != 0 {
		spt, heads = 1, 1
	}
	binary.LittleEndian.PutUint16(bs[24:], spt)
	binary.LittleEndian.PutUint16(bs[26:], heads)
	binary.LittleEndian.PutUint32(bs[28:], opt.HiddenSectors)
	binary.LittleEndian.PutUint32(bs[32:], g.totalSectors)
	binary.LittleEndian.PutUint32(bs[36:], g.fatSectors)
	binary.LittleEndian.PutUint32(bs[44:], 2) // root directory cluster
	binary.LittleEndian.PutUint16(bs[48:], 1) // FSInfo sector
	binary.LittleEndian.PutUint16(bs[50:], 6) // backup boot sector
	bs[64] = 0x80                             // BIOS drive number: first hard disk
	bs[66] = 0x29                             // extended boot signature: the next three fields are valid
	binary.LittleEndian.PutUint32(bs[67:], opt.VolumeID)
	copy(bs[71:82], label[:])
	copy(bs[82:90], "FAT32   ")
	// Boot code for a BIOS that starts this volume: halt, it is not bootable.
	copy(bs[90:], []byte{0xFA, 0xF4, 0xEB, 0xFD}) // cli; hlt; jmp hlt
	bs[510], bs[511] = 0x55, 0xAA

	fsi := b[sectorSize : 2*sectorSize]
	binary.LittleEndian.PutUint32(fsi[0:], 0x41615252)
	binary.LittleEndian.PutUint32(fsi[484:], 0x61417272)
	binary.LittleEndian.PutUint32(fsi[488:], g.clusters-(next-2)) // free clusters
	nextFree := uint32(0xFFFFFFFF)
	if next <= g.clusters+1 {
		nextFree = next
	}
	binary.LittleEndian.PutUint32(fsi[492:], nextFree)
	binary.LittleEndian.PutUint32(fsi[508:], 0xAA550000)

	copy(b[6*sectorSize:], b[:2*sectorSize])
	if err := v.seek(0); err != nil {
		return err
	}
	return v.write(b)
}

// writeFATs writes both FATs up to the last used cluster; the free rest is left as zeros.
func (v *volumeWriter) writeFATs(g geometry, root *node, next uint32) error {
	n := int64(next) * 4
	n = (n + sectorSize - 1) / sectorSize * sectorSize
	fat := make([]byte, n)
	binary.LittleEndian.PutUint32(fat[0:], 0x0FFFFF00|mediaFixed)
	binary.LittleEndian.PutUint32(fat[4:], endOfChain) // clean shutdown, no I/O errors
	var chain func(d *node)
	link := func(c *node) {
		for i := uint32(0); i < c.nclust; i++ {
			val := c.cluster + i + 1
			if i == c.nclust-1 {
				val = endOfChain
			}
			binary.LittleEndian.PutUint32(fat[4*(c.cluster+i):], val)
		}
	}
	chain = func(d *node) {
		for _, c := range d.children {
			link(c)
			if c.dir {
				chain(c)
			}
		}
	}
	link(root)
	chain(root)
	for i := int64(0); i < numFATs; i++ {
		if err := v.seek(int64(g.reserved)*sectorSize + i*int64(g.fatSectors)*sectorSize); err != nil {
			return err
		}
		if err := v.write(fat); err != nil {
			return err
		}
	}
	return v.flush()
}

// writeData writes directory d (its entries, then everything below it) in allocation order.
func (v *volumeWriter) writeData(d *node, label shortName, ts stamp, cb int64) error {
	v.data = true
	if isRoot(d) {
		if err := v.writeDir(d, nil, label, ts, cb); err != nil {
			return err
		}
	}
	for i, c := range d.children {
		if i%64 == 0 {
			if err := v.ctx.Err(); err != nil {
				return err
			}
		}
		switch {
		case c.dir:
			if err := v.writeDir(c, d, noLabel, ts, cb); err != nil {
				return err
			}
			if err := v.writeData(c, noLabel, ts, cb); err != nil {
				return err
			}
		case c.nclust > 0:
			if err := v.write(c.data); err != nil {
				return err
			}
			if err := v.pad(int64(c.nclust)*cb - int64(len(c.data))); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeDir writes the entries of directory d, padded to its clusters.
func (v *volumeWriter) writeDir(d, parent *node, label shortName, ts stamp, cb int64) error {
	b := make([]byte, int64(d.nclust)*cb)
	e := b
	put := func(name shortName, attr, flags byte, cluster, size uint32) {
		copy(e[0:11], name[:])
		e[11] = attr
		e[12] = flags
		if attr != attrVolumeID {
			e[13] = ts.tenths
			binary.LittleEndian.PutUint16(e[14:], ts.time)
			binary.LittleEndian.PutUint16(e[16:], ts.date)
			binary.LittleEndian.PutUint16(e[18:], ts.date)
		}
		binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
		binary.LittleEndian.PutUint16(e[22:], ts.time)
		binary.LittleEndian.PutUint16(e[24:], ts.date)
		binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
		binary.LittleEndian.PutUint32(e[28:], size)
		e = e[32:]
	}
	if parent == nil {
		if label != noLabel {
			put(label, attrVolumeID, 0, 0, 0)
		}
	} else {
		put(shortName{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, attrDirectory, 0, d.cluster, 0)
		up := parent.cluster
		if isRoot(parent) {
			up = 0 // '..' of a first-level directory names the root as cluster 0
		}
		put(shortName{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, attrDirectory, 0, up, 0)
	}
	for i, c := range d.children {
		n := d.names[i]
		if n.long != nil {
			sum := n.short.checksum()
			count := (len(n.long) + 12) / 13
			for seq := count; seq >= 1; seq-- {
				putLong(e, n.long, seq, seq == count, sum)
				e = e[32:]
			}
		}
		if c.dir {
			put(n.short, attrDirectory, n.flags, c.cluster, 0)
		} else {
			put(n.short, attrArchive, n.flags, c.cluster, uint32(len(c.data)))
		}
	}
	return v.write(b)
}

// longNameOffsets are the byte offsets of the 13 UTF-16 units in a long-name entry.
var longNameOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// putLong fills e with long-name entry seq (1-based) of name.
func putLong(e []byte, name []uint16, seq int, last bool, sum byte) {
	e[0] = byte(seq)
	if last {
		e[0] |= 0x40
	}
	e[11] = attrLongName
	e[13] = sum
	for k, off := range longNameOffsets {
		i := (seq-1)*13 + k
		var u uint16
		switch {
		case i < len(name):
			u = name[i]
		case i == len(name):
			u = 0x0000 // terminator, when the name does not fill the entry
		default:
			u = 0xFFFF // padding after the terminator
		}
		binary.LittleEndian.PutUint16(e[off:], u)
	}
}
