package rpiboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"
)

// The Raspberry Pi boot ROM and firmware read an MBR partition table (GPT only on the Pi 4 and
// later with a recent EEPROM), so Pi images use MBR: up to four primary partitions, each aligned
// to 1 MiB.

// MBR partition types.
const (
	TypeFAT32 byte = 0x0c // FAT32 with LBA addressing, as the firmware expects
	TypeLinux byte = 0x83
)

// Part is one primary partition of a Pi image.
type Part struct {
	Size  int64 // bytes, a multiple of 1 MiB; 0: the rest of the disk (last partition only)
	Type  byte
	Label string     // FAT volume label
	Files []fat.File // FAT32 contents when Type is TypeFAT32
}

// PartResult is where a partition landed.
type PartResult struct {
	Number      int
	Start, Size int64
}

const align = 1 << 20

// WriteImage writes a sparse disk image of size bytes: an MBR with the disk signature sig and
// the partitions in order from 1 MiB, their FAT32 file systems stamped with mod. The same
// arguments give the same bytes. It also returns the byte ranges written (bmap.Recorder.Written),
// the block map's data. On error the partial image is removed.
func WriteImage(ctx context.Context, path string, size int64, sig uint32, parts []Part, mod time.Time, prog progress.Func) (res []PartResult, written [][2]int64, err error) {
	if len(parts) == 0 || len(parts) > 4 {
		return nil, nil, fmt.Errorf("Pi image %s: %d partitions, an MBR holds 1 to 4", path, len(parts))
	}
	if size%align != 0 || size > 2<<40 {
		return nil, nil, fmt.Errorf("Pi image %s: size %d is not a multiple of 1 MiB below 2 TiB", path, size)
	}
	start := int64(align)
	for i, p := range parts {
		n := p.Size
		if n == 0 && i == len(parts)-1 {
			n = size - start
		}
		if n <= 0 || n%align != 0 || start+n > size {
			return nil, nil, fmt.Errorf("Pi image %s: partition %d (%d bytes) does not fit a %d-byte disk", path, i+1, p.Size, size)
		}
		res = append(res, PartResult{Number: i + 1, Start: start, Size: n})
		start += n
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("Pi image: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("Pi image %s: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path)
			res, written = nil, nil
		}
	}()
	if err := f.Truncate(size); err != nil {
		return nil, nil, fmt.Errorf("Pi image %s: %w", path, err)
	}
	mbr := make([]byte, 512)
	binary.LittleEndian.PutUint32(mbr[440:], sig)
	for i, r := range res {
		e := mbr[446+16*i:]
		// CHS fields of LBA-only tables: the "beyond CHS" marker, as sfdisk and parted write.
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		e[4] = parts[i].Type
		binary.LittleEndian.PutUint32(e[8:], uint32(r.Start/512))
		binary.LittleEndian.PutUint32(e[12:], uint32(r.Size/512))
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	w := bmap.NewRecorder(f)
	if _, err := w.WriteAt(mbr, 0); err != nil {
		return nil, nil, fmt.Errorf("Pi image %s: %w", path, err)
	}
	for i, r := range res {
		p := parts[i]
		if p.Type != TypeFAT32 {
			continue
		}
		h := fnv.New32a()
		fmt.Fprintf(h, "%08x/%d", sig, r.Number)
		opt := fat.Options{Label: p.Label, VolumeID: h.Sum32(), HiddenSectors: uint32(r.Start / 512), ModTime: mod}
		if r.Size < 64<<20 {
			opt.ClusterSize = 512 // FAT32 needs 65525 clusters
		}
		if _, err := fat.Write(ctx, w, r.Start, r.Size, p.Files, opt, prog); err != nil {
			if errors.Is(err, fat.ErrTooSmall) {
				return nil, nil, fmt.Errorf("Pi image %s: partition %d of %d MiB is too small for FAT32 (at least 33 MiB): %w", path, r.Number, r.Size>>20, err)
			}
			return nil, nil, fmt.Errorf("Pi image %s: partition %d: %w", path, r.Number, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, nil, fmt.Errorf("Pi image %s: %w", path, err)
	}
	return res, w.Written(), nil
}
