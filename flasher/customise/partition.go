package customise

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ProbeSize is how much of the start of an image Locate needs: the MBR, the primary GPT header and
// its partition entries all lie in the first MiB of every image this package customises.
const ProbeSize = 1 << 20

// ErrNoBootPartition: the image has no partition table Kiln reads or no FAT partition in it.
var ErrNoBootPartition = errors.New("no FAT boot partition found")

// Partition is the boot FAT partition of an image, in bytes.
type Partition struct {
	Table  string // "mbr" or "gpt"
	Number int    // 1-based, as the kernel numbers it
	Offset int64
	Size   int64
}

func (p Partition) String() string {
	return fmt.Sprintf("partition %d (%s, %d MiB at byte %d)", p.Number, p.Table, p.Size>>20, p.Offset)
}

// MBR partition types of FAT file systems (FAT12, FAT16, FAT32 CHS/LBA, FAT16 LBA, EFI system).
var mbrFAT = map[byte]bool{0x01: true, 0x04: true, 0x06: true, 0x0b: true, 0x0c: true, 0x0e: true, 0xef: true}

// GPT type GUIDs (on-disk byte order) of partitions that hold FAT: EFI system, Microsoft basic data.
var gptFAT = [][16]byte{
	guid(0xC12A7328, 0xF81F, 0x11D2, [8]byte{0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}),
	guid(0xEBD0A0A2, 0xB9E5, 0x4433, [8]byte{0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7}),
}

func guid(a uint32, b, c uint16, d [8]byte) (g [16]byte) {
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// Locate finds the boot FAT partition in the partition table at the start of an image (head holds
// its first bytes, up to ProbeSize): the first FAT partition, or in a GPT the one named "cidata".
// Only the table is read; nothing in head is trusted beyond it.
func Locate(head []byte) (Partition, error) {
	if len(head) < 512 || head[510] != 0x55 || head[511] != 0xaa {
		return Partition{}, fmt.Errorf("%w: the image has no partition table (no MBR signature)", ErrNoBootPartition)
	}
	var protective bool
	for i := range 4 {
		if head[446+16*i+4] == 0xee {
			protective = true
		}
	}
	if protective {
		for _, ss := range []int{512, 4096} {
			if len(head) >= 2*ss && bytes.Equal(head[ss:ss+8], []byte("EFI PART")) {
				return locateGPT(head, ss)
			}
		}
		return Partition{}, fmt.Errorf("%w: the protective MBR announces a GPT but no GPT header follows", ErrNoBootPartition)
	}
	if isFATBootSector(head) {
		return Partition{}, fmt.Errorf("%w: the image is a bare FAT file system without a partition table, which Kiln does not customise", ErrNoBootPartition)
	}
	for i := range 4 {
		e := head[446+16*i : 446+16*i+16]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:]))
		n := int64(binary.LittleEndian.Uint32(e[12:]))
		if mbrFAT[typ] && start > 0 && n > 0 {
			return Partition{Table: "mbr", Number: i + 1, Offset: start * 512, Size: n * 512}, nil
		}
	}
	return Partition{}, fmt.Errorf("%w: no FAT partition in the MBR", ErrNoBootPartition)
}

func locateGPT(head []byte, ss int) (Partition, error) {
	h := head[ss : 2*ss]
	entLBA := binary.LittleEndian.Uint64(h[72:])
	count := binary.LittleEndian.Uint32(h[80:])
	size := binary.LittleEndian.Uint32(h[84:])
	if size < 128 || size > 1024 || size%8 != 0 || count == 0 || count > 1024 {
		return Partition{}, fmt.Errorf("%w: the GPT header is damaged (%d entries of %d bytes)", ErrNoBootPartition, count, size)
	}
	if entLBA < 2 || entLBA > uint64(len(head)/ss) || int(entLBA)*ss+int(count)*int(size) > len(head) {
		return Partition{}, fmt.Errorf("%w: the GPT's partition entries are not within the image's first MiB", ErrNoBootPartition)
	}
	ents := head[int(entLBA)*ss:]
	var found []Partition
	for i := range int(count) {
		e := ents[i*int(size) : (i+1)*int(size)]
		var typ [16]byte
		copy(typ[:], e[:16])
		if typ != gptFAT[0] && typ != gptFAT[1] {
			continue
		}
		first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		if first == 0 || last < first || last >= 1<<40 {
			continue
		}
		p := Partition{Table: "gpt", Number: i + 1, Offset: int64(first) * int64(ss), Size: int64(last-first+1) * int64(ss)}
		if seedName(e[56:128]) {
			return p, nil // a NoCloud seed beside an EFI system partition
		}
		found = append(found, p)
	}
	if len(found) == 0 {
		return Partition{}, fmt.Errorf("%w: no EFI system or basic data partition in the GPT", ErrNoBootPartition)
	}
	return found[0], nil
}

// seedName reports whether a GPT partition name (UTF-16LE) is "cidata", a NoCloud seed's name.
func seedName(b []byte) bool {
	var name []byte
	for i := 0; i+1 < len(b) && b[i] != 0; i += 2 {
		if b[i+1] != 0 {
			return false
		}
		name = append(name, b[i])
	}
	return strings.EqualFold(string(name), "cidata")
}

// isFATBootSector reports whether b starts with a FAT boot sector rather than an MBR.
func isFATBootSector(b []byte) bool {
	return (b[0] == 0xeb || b[0] == 0xe9) && (bytes.Equal(b[82:87], []byte("FAT32")) || bytes.Equal(b[54:59], []byte("FAT12")) || bytes.Equal(b[54:59], []byte("FAT16")))
}
