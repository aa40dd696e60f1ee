package customise

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// ErrUnsupportedFAT: the boot partition is not a FAT12, FAT16 or FAT32 file system Kiln can change safely.
var ErrUnsupportedFAT = errors.New("boot partition not customisable")

const maxRootDir = 4 << 20 // bytes of root directory Kiln reads

// volume is the checked geometry of a FAT12, FAT16 or FAT32 file system.
type volume struct {
	bits            int   // 12, 16 or 32
	bps, spc        int64 // bytes per sector, sectors per cluster
	reserved        int64 // sectors
	fatSectors      int64 // per FAT
	clusters        int64 // data clusters, numbered 2..clusters+1
	rootCluster     uint32
	fsInfo          int64 // sector, 0 for none
	label           string
	fat             []uint32 // the first FAT; FAT12 and FAT16 values from 0xff7/0xfff7 up are widened to FAT32's
	rootDirClusters int
}

// checkFAT reads the boot sector and FAT of a FAT12, FAT16 or FAT32 volume of size bytes and checks
// everything the file system library trusts: geometry within the volume, matching FATs, cluster
// chains without loops and a root directory of bounded size. A hostile volume gets an error, never
// a hang or an allocation beyond the volume's FAT.
func checkFAT(r io.ReaderAt, size int64) (*volume, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return nil, fmt.Errorf("%w: read boot sector: %w", ErrUnsupportedFAT, err)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	if bs[510] != 0x55 || bs[511] != 0xaa || (bs[0] != 0xeb && bs[0] != 0xe9) {
		return nil, fmt.Errorf("%w: it holds no FAT file system (no boot sector signature)", ErrUnsupportedFAT)
	}
	v := &volume{bits: 32, bps: le16(11), spc: int64(bs[13]), reserved: le16(14)}
	rootEntries := le16(17)
	switch v.bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("%w: bad sector size %d", ErrUnsupportedFAT, v.bps)
	}
	if v.spc == 0 || v.spc&(v.spc-1) != 0 || v.bps*v.spc > 64<<10 {
		return nil, fmt.Errorf("%w: bad cluster size (%d sectors)", ErrUnsupportedFAT, v.spc)
	}
	if bs[16] != 2 {
		return nil, fmt.Errorf("%w: %d FATs (Kiln expects the usual 2)", ErrUnsupportedFAT, bs[16])
	}
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	var rootDirSectors int64
	if le16(22) != 0 { // FAT12 or FAT16: a FAT size here and a fixed root directory
		v.bits, v.fatSectors = 16, le16(22)
		if rootEntries == 0 || v.bps != 512 {
			return nil, fmt.Errorf("%w: damaged FAT12/FAT16 geometry (%d root entries, %d-byte sectors)", ErrUnsupportedFAT, rootEntries, v.bps)
		}
		rootDirSectors = (rootEntries*32 + v.bps - 1) / v.bps
		if bs[38] == 0x29 {
			v.label = strings.TrimRight(string(bs[43:54]), " \x00")
		}
	} else {
		if rootEntries != 0 {
			return nil, fmt.Errorf("%w: damaged FAT32 geometry (%d root entries)", ErrUnsupportedFAT, rootEntries)
		}
		v.fatSectors = le32(36)
		v.rootCluster = uint32(le32(44))
		v.fsInfo = le16(48)
		if bs[66] == 0x29 {
			v.label = strings.TrimRight(string(bs[71:82]), " \x00")
		}
	}
	if total*v.bps > size || total == 0 {
		return nil, fmt.Errorf("%w: the file system (%d sectors) is larger than its partition (%d bytes)", ErrUnsupportedFAT, total, size)
	}
	dataStart := v.reserved + 2*v.fatSectors + rootDirSectors
	if v.reserved == 0 || v.fatSectors == 0 || dataStart >= total {
		return nil, fmt.Errorf("%w: damaged geometry (reserved %d, FAT %d of %d sectors)", ErrUnsupportedFAT, v.reserved, v.fatSectors, total)
	}
	v.clusters = (total - dataStart) / v.spc
	if v.bits == 16 && v.clusters < 4085 { // the cluster count alone makes a volume FAT12
		v.bits = 12
	}
	bits := int64(v.bits)
	switch {
	case v.bits == 16 && v.clusters >= 65525:
		return nil, fmt.Errorf("%w: damaged FAT16 geometry (%d clusters)", ErrUnsupportedFAT, v.clusters)
	case v.clusters < 1 || v.clusters+2 > v.fatSectors*v.bps*8/bits:
		return nil, fmt.Errorf("%w: the FAT is too small for its %d clusters", ErrUnsupportedFAT, v.clusters)
	case v.fatSectors*v.bps > (v.clusters+2)*bits/8+1<<20:
		return nil, fmt.Errorf("%w: its FAT (%d sectors) is far larger than its %d clusters need", ErrUnsupportedFAT, v.fatSectors, v.clusters)
	}
	if v.fsInfo >= v.reserved {
		v.fsInfo = 0
	}
	fatBytes := v.fatSectors * v.bps
	fat1, fat2 := make([]byte, fatBytes), make([]byte, fatBytes)
	if _, err := r.ReadAt(fat1, v.reserved*v.bps); err != nil {
		return nil, fmt.Errorf("%w: read FAT: %w", ErrUnsupportedFAT, err)
	}
	if _, err := r.ReadAt(fat2, (v.reserved+v.fatSectors)*v.bps); err != nil {
		return nil, fmt.Errorf("%w: read FAT: %w", ErrUnsupportedFAT, err)
	}
	if !bytes.Equal(fat1, fat2) {
		return nil, fmt.Errorf("%w: its two FATs differ (run fsck.vfat on the image first)", ErrUnsupportedFAT)
	}
	v.fat = make([]uint32, fatBytes*8/bits)
	for i := range v.fat {
		switch v.bits {
		case 12: // two entries in three bytes, the even one in the low 12 bits
			x := uint32(binary.LittleEndian.Uint16(fat1[i*3/2:]))
			if i%2 == 1 {
				x >>= 4
			}
			if x &= 0xfff; x >= 0xff7 {
				x |= 0x0ffff000
			}
			v.fat[i] = x
		case 16:
			x := uint32(binary.LittleEndian.Uint16(fat1[2*i:]))
			if x >= 0xfff7 {
				x |= 0x0fff0000
			}
			v.fat[i] = x
		default:
			v.fat[i] = binary.LittleEndian.Uint32(fat1[4*i:]) & 0x0fffffff
		}
	}
	if err := v.checkChains(); err != nil {
		return nil, err
	}
	if v.bits != 32 {
		return v, nil
	}
	max := uint32(v.clusters + 1)
	if v.rootCluster < 2 || v.rootCluster > max || v.fat[v.rootCluster] == 0 {
		return nil, fmt.Errorf("%w: bad root directory cluster %d", ErrUnsupportedFAT, v.rootCluster)
	}
	for c := v.rootCluster; ; c = v.fat[c] {
		v.rootDirClusters++
		if int64(v.rootDirClusters)*v.bps*v.spc > maxRootDir {
			return nil, fmt.Errorf("%w: the root directory is larger than %d MiB", ErrUnsupportedFAT, maxRootDir>>20)
		}
		if next := v.fat[c]; next >= 0x0ffffff8 {
			break
		} else if next < 2 || next > max {
			return nil, fmt.Errorf("%w: the root directory's cluster chain is broken at %d", ErrUnsupportedFAT, c)
		}
	}
	return v, nil
}

// checkChains refuses a FAT whose cluster chains loop or point past the data clusters.
func (v *volume) checkChains() error {
	max := uint32(v.clusters + 1)
	// state: 0 unseen, 1 on the walk in progress, 2 known to end.
	state := make([]uint8, max+1)
	var walk []uint32
	for start := uint32(2); start <= max; start++ {
		walk = walk[:0]
		c := start
		for c >= 2 && c <= max && state[c] == 0 {
			next := v.fat[c]
			if next == 0 || next == 1 || next == 0x0ffffff7 || next >= 0x0ffffff8 {
				break // free, reserved, bad or end of chain
			}
			if next > max {
				return fmt.Errorf("%w: cluster %d points past the volume (%d); run fsck.vfat on the image first", ErrUnsupportedFAT, c, next)
			}
			state[c] = 1
			walk = append(walk, c)
			c = next
		}
		if c >= 2 && c <= max && state[c] == 1 {
			return fmt.Errorf("%w: its cluster chains loop at cluster %d; run fsck.vfat on the image first", ErrUnsupportedFAT, c)
		}
		for _, w := range walk {
			state[w] = 2
		}
	}
	return nil
}

// fatFS is what Apply needs of a file system: listing and writing files.
type fatFS interface {
	iofs.ReadDirFS
	OpenFile(path string, flag int) (filesystem.File, error)
}

// openFAT opens a checked volume for changes. The library is given only volumes checkFAT passed.
func openFAT(f *os.File, size int64, v *volume) (fsys fatFS, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the file system could not be read: %v", ErrUnsupportedFAT, r)
		}
	}()
	switch v.bits {
	case 12:
		fsys, err = fat12.Read(file.New(f, false), size, 0, 0)
	case 16:
		fsys, err = fat16.Read(file.New(f, false), size, 0, 0)
	default:
		fsys, err = fat32.Read(file.New(f, false), size, 0, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedFAT, err)
	}
	return fsys, nil
}

// fixFSInfo rewrites the FSInfo sector's free-cluster count and next-free hint from the FAT, which
// the file system library leaves stale after allocating.
func fixFSInfo(f *os.File, v *volume) error {
	if v.fsInfo == 0 || v.bits != 32 {
		return nil
	}
	sec := make([]byte, 512)
	off := v.fsInfo * v.bps
	if _, err := f.ReadAt(sec, off); err != nil {
		return fmt.Errorf("read FSInfo: %w", err)
	}
	if string(sec[0:4]) != "RRaA" || string(sec[484:488]) != "rrAa" {
		return nil
	}
	fatb := make([]byte, v.fatSectors*v.bps)
	if _, err := f.ReadAt(fatb, v.reserved*v.bps); err != nil {
		return fmt.Errorf("read FAT: %w", err)
	}
	var free, next uint32
	for c := int64(2); c <= v.clusters+1; c++ {
		if binary.LittleEndian.Uint32(fatb[4*c:])&0x0fffffff == 0 {
			if free == 0 {
				next = uint32(c)
			}
			free++
		}
	}
	if free == 0 {
		next = 0xffffffff
	}
	binary.LittleEndian.PutUint32(sec[488:], free)
	binary.LittleEndian.PutUint32(sec[492:], next)
	if _, err := f.WriteAt(sec, off); err != nil {
		return fmt.Errorf("write FSInfo: %w", err)
	}
	return nil
}
