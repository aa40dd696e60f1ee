// Package disk writes a raw GPT disk image as a sparse file: protective MBR, primary and backup GPT
// (through go-diskfs), partitions aligned to 1 MiB, and FAT32 filesystems laid out from file trees in
// one streaming pass (package fat). Only sectors that hold data are written, so the image's block map
// stays small and flashing it with the map is quick.
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"
)

// SectorSize is the image's logical sector size.
const SectorSize = 512

// Alignment of every partition's start and size.
const Alignment = 1 << 20

// Partition types.
const (
	TypeESP   = "esp"   // EFI System Partition
	TypeData  = "data"  // Microsoft basic data: a FAT partition every OS mounts
	TypeLinux = "linux" // Linux filesystem data
)

// Filesystems.
const (
	FSNone  = ""      // the partition is left empty (zeros)
	FSFAT32 = "fat32" // FAT32 holding Files
	FSImage = "image" // Image written at the partition's start (an EROFS root, say), the rest zeros
)

// Errors a caller can branch on.
var (
	// ErrTooSmall: the partitions do not fit on the disk, or a filesystem does not fit its partition.
	ErrTooSmall = errors.New("disk or partition too small")
	// ErrUnsupported: a file tree holds a node the partition's filesystem cannot store.
	ErrUnsupported = errors.New("not supported by the filesystem")
)

// Layout describes a disk image.
type Layout struct {
	Size       int64  // bytes, a multiple of 512
	DiskGUID   string // GPT disk GUID; derive it from the recipe for reproducible images
	Partitions []Partition
	// ModTime stamps the files on the filesystems (SOURCE_DATE_EPOCH).
	ModTime time.Time
	// BIOS, when set, makes the disk boot on legacy BIOS as well (see BIOSBoot).
	BIOS *BIOSBoot
}

// BIOSBoot is legacy BIOS boot code. Code goes into the MBR in front of the partition table; Core
// goes into a BIOS boot partition (GPT type 21686148-6449-6E6F-744E-656564454649, as GRUB expects)
// from sector BIOSBootLBA, in the gap between the primary GPT and the first partition at 1 MiB, so
// the other partitions keep their places and numbers. Its GPT entry comes after theirs.
type BIOSBoot struct {
	Code []byte // MBR boot code, at most 440 bytes (the disk signature and table follow)
	Core []byte // at most BIOSBootSize bytes
	Name string // GPT partition name
	GUID string // unique partition GUID
	// Active marks the protective MBR entry bootable: some PC BIOSes boot only such a disk, but
	// the GPT specification forbids it and some UEFI firmware then ignores the disk, so only a
	// BIOS-only image sets it.
	Active bool
}

// BIOSBootLBA is the first sector of the BIOS boot partition; it ends before 1 MiB.
const BIOSBootLBA = 40

// BIOSBootSize is the BIOS boot partition's size in bytes.
const BIOSBootSize = Alignment - BIOSBootLBA*SectorSize

// Partition describes one partition, in disk order.
type Partition struct {
	Name  string // GPT partition name, at most 36 UTF-16 units
	Type  string // TypeESP, TypeData or TypeLinux
	Size  int64  // bytes, rounded up to 1 MiB; 0: the rest of the disk (last partition only)
	Label string // filesystem label
	GUID  string // unique partition GUID; derive it from the recipe for reproducible images
	FS    string // FSFAT32, FSImage or FSNone
	// Files is the filesystem's contents; parent directories are implied.
	Files []fat.File
	// Image is an FSImage partition's contents, a filesystem built elsewhere.
	Image []byte
}

// Result describes a written image.
type Result struct {
	Size       int64
	Partitions []PartitionResult
	BIOSBoot   *PartitionResult // the BIOS boot partition, when Layout.BIOS is set
	// Written lists the [start, end) byte ranges written, sorted and merged: the block map's
	// data, the same on every OS (the rest of the image is holes, reading as zeros).
	Written [][2]int64
}

// PartitionResult is where a partition landed and what it holds.
type PartitionResult struct {
	Name   string
	Index  int    // 1-based GPT entry number
	GUID   string // upper case
	Start  int64  // byte offset in the image
	Size   int64  // bytes
	FS     string
	Files  int   // regular files written
	Dirs   int   // directories written, without the root
	Used   int64 // filesystem bytes in use (clusters)
	Free   int64 // filesystem bytes free
	Volume uint32
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var gptTypes = map[string]gpt.Type{
	TypeESP:   gpt.EFISystemPartition,
	TypeData:  gpt.MicrosoftBasicData,
	TypeLinux: gpt.LinuxFilesystem,
}

// gptReserved is what the backup GPT takes at the end of the disk: 32 sectors of partition entries
// and the header.
const gptReserved = 33

// Write creates the image at path (replacing any file there) and fills it per layout. On error,
// including cancellation (which returns ctx.Err(), wrapped), the partial image is removed. prog
// receives Phase "disk" events with the partition in Device and its bytes in Done/Total.
func Write(ctx context.Context, path string, layout Layout, prog progress.Func) (res *Result, err error) {
	parts, err := plan(layout)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("disk: create image: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("disk %s: close: %w", path, cerr)
		}
		if err != nil {
			res = nil
			os.Remove(path)
		}
	}()
	if err := f.Truncate(layout.Size); err != nil {
		return nil, fmt.Errorf("disk %s: set size: %w", path, err)
	}
	w := bmap.NewRecorder(f)
	if err := writeGPT(w, layout, parts); err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	res = &Result{Size: layout.Size}
	if b := layout.BIOS; b != nil {
		if err := writeBIOSBoot(w, b); err != nil {
			return nil, fmt.Errorf("disk %s: %w", path, err)
		}
		p := parts[len(parts)-1]
		res.BIOSBoot = &PartitionResult{Name: p.Name, Index: p.Index, GUID: p.GUID, Start: int64(p.Start) * SectorSize,
			Size: int64(p.Size)}
	}
	for i, p := range layout.Partitions {
		pr := PartitionResult{Name: p.Name, Index: i + 1, GUID: strings.ToUpper(p.GUID),
			Start: int64(parts[i].Start) * SectorSize, Size: int64(parts[i].Size), FS: p.FS}
		if p.FS == FSFAT32 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("disk %s: %w", path, err)
			}
			pr.Volume = volumeID(p.GUID)
			fp := func(e progress.Event) {
				prog.Report(progress.Event{Phase: "disk", Device: p.Name, Done: e.Done, Total: e.Total,
					Message: "writing partition " + p.Name})
			}
			opt := fat.Options{Label: p.Label, VolumeID: pr.Volume, HiddenSectors: uint32(parts[i].Start),
				ModTime: layout.ModTime}
			info, err := fat.Write(ctx, w, pr.Start, pr.Size, p.Files, opt, fp)
			if err != nil {
				if errors.Is(err, fat.ErrTooSmall) || errors.Is(err, fat.ErrNoSpace) {
					err = fmt.Errorf("%w: %w", ErrTooSmall, err)
				}
				return nil, fmt.Errorf("disk %s: partition %s: %w", path, p.Name, err)
			}
			pr.Files, pr.Dirs = info.Files, info.Dirs
			pr.Used, pr.Free = int64(info.UsedClusters)*info.ClusterSize, info.FreeBytes()
		}
		if p.FS == FSImage {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("disk %s: %w", path, err)
			}
			if err := writeRaw(ctx, w, pr.Start, p.Image, func(done int64) {
				prog.Report(progress.Event{Phase: "disk", Device: p.Name, Done: done, Total: int64(len(p.Image)),
					Message: "writing partition " + p.Name})
			}); err != nil {
				return nil, fmt.Errorf("disk %s: partition %s: %w", path, p.Name, err)
			}
			pr.Used = int64(len(p.Image))
			pr.Free = pr.Size - pr.Used
		}
		res.Partitions = append(res.Partitions, pr)
	}
	res.Written = w.Written()
	return res, nil
}

// plan checks a layout and places its partitions: each starts on a 1 MiB boundary right after the
// previous one; a size of 0 takes what is left, ending on a 1 MiB boundary.
func plan(l Layout) ([]*gpt.Partition, error) {
	if l.Size <= 0 || l.Size%SectorSize != 0 {
		return nil, fmt.Errorf("disk size %d is not a positive multiple of %d bytes", l.Size, SectorSize)
	}
	if !guidRE.MatchString(l.DiskGUID) {
		return nil, fmt.Errorf("disk GUID %q is not a GUID (derive one from the recipe)", l.DiskGUID)
	}
	if len(l.Partitions) == 0 || len(l.Partitions) > 128 {
		return nil, fmt.Errorf("%d partitions: a GPT disk image needs 1 to 128", len(l.Partitions))
	}
	const align = Alignment / SectorSize
	lastUsable := uint64(l.Size/SectorSize) - gptReserved - 1 // last LBA a partition may use
	next := uint64(align)
	seen := map[string]string{}
	var out []*gpt.Partition
	for i, p := range l.Partitions {
		where := fmt.Sprintf("partition %d (%s)", i+1, p.Name)
		t, ok := gptTypes[p.Type]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: type %q is not one of esp, data, linux", where, p.Type)
		case len(utf16.Encode([]rune(p.Name))) > 36:
			return nil, fmt.Errorf("%s: GPT names are at most 36 characters", where)
		case !guidRE.MatchString(p.GUID):
			return nil, fmt.Errorf("%s: GUID %q is not a GUID (derive one from the recipe)", where, p.GUID)
		case p.FS != FSNone && p.FS != FSFAT32 && p.FS != FSImage:
			return nil, fmt.Errorf("%s: filesystem %q is not supported (fat32, image, or none)", where, p.FS)
		case p.FS != FSFAT32 && p.Files != nil:
			return nil, fmt.Errorf("%s: files given for a partition without a filesystem that holds files (fat32)", where)
		case p.FS != FSImage && p.Image != nil:
			return nil, fmt.Errorf("%s: an image given for a partition of filesystem %q", where, p.FS)
		case p.Size < 0:
			return nil, fmt.Errorf("%s: negative size", where)
		case p.Size == 0 && i != len(l.Partitions)-1:
			return nil, fmt.Errorf("%s: only the last partition may take the rest of the disk (size 0)", where)
		}
		g := strings.ToUpper(p.GUID)
		if prev, dup := seen[g]; dup || strings.EqualFold(g, l.DiskGUID) {
			if !dup {
				prev = "the disk"
			}
			return nil, fmt.Errorf("%s: GUID %s is already used by %s", where, g, prev)
		}
		seen[g] = where
		var end uint64
		if p.Size == 0 {
			end = (lastUsable+1)/align*align - 1
			if end < next {
				return nil, fmt.Errorf("%w: %s: no space left for it on a %d MiB disk", ErrTooSmall, where, l.Size>>20)
			}
		} else {
			end = next + uint64((p.Size+Alignment-1)/Alignment*align) - 1
			if end > lastUsable {
				return nil, fmt.Errorf("%w: %s: ends at %d MiB, past the usable end of the %d MiB disk: make the disk larger or the partitions smaller",
					ErrTooSmall, where, (end+1)*SectorSize>>20, l.Size>>20)
			}
		}
		if size := int64(end-next+1) * SectorSize; int64(len(p.Image)) > size {
			return nil, fmt.Errorf("%w: %s: an image of %d MiB does not fit its %d MiB", ErrTooSmall, where, (int64(len(p.Image))+Alignment-1)>>20, size>>20)
		}
		out = append(out, &gpt.Partition{Index: i + 1, Start: next, End: end, Size: (end - next + 1) * SectorSize,
			Type: t, Name: p.Name, GUID: g})
		next = end + 1
	}
	if b := l.BIOS; b != nil {
		where := "BIOS boot partition"
		switch {
		case len(b.Code) > 440:
			return nil, fmt.Errorf("%s: MBR boot code of %d bytes, at most 440 fit", where, len(b.Code))
		case len(b.Core) > BIOSBootSize:
			return nil, fmt.Errorf("%w: %s: core image of %d bytes, at most %d fit", ErrTooSmall, where, len(b.Core), BIOSBootSize)
		case !guidRE.MatchString(b.GUID):
			return nil, fmt.Errorf("%s: GUID %q is not a GUID (derive one from the recipe)", where, b.GUID)
		case len(utf16.Encode([]rune(b.Name))) > 36:
			return nil, fmt.Errorf("%s: GPT names are at most 36 characters", where)
		}
		g := strings.ToUpper(b.GUID)
		if prev, dup := seen[g]; dup {
			return nil, fmt.Errorf("%s: GUID %s is already used by %s", where, g, prev)
		}
		if len(out) == 128 {
			return nil, fmt.Errorf("%s: no GPT entry left", where)
		}
		out = append(out, &gpt.Partition{Index: len(out) + 1, Start: BIOSBootLBA, End: align - 1,
			Size: BIOSBootSize, Type: gpt.BIOSBoot, Name: b.Name, GUID: g})
	}
	return out, nil
}

// volumeID derives a FAT volume serial number from the partition GUID, so it is stable per recipe
// and differs between partitions.
func volumeID(guid string) uint32 {
	sum := sha256.Sum256([]byte("kiln-fat-volume-id\x00" + strings.ToUpper(guid)))
	return binary.LittleEndian.Uint32(sum[:4])
}

// writeRaw writes data at off in 4 MiB pieces, reporting progress and checking ctx between them.
func writeRaw(ctx context.Context, w io.WriterAt, off int64, data []byte, done func(int64)) error {
	const chunk = 4 << 20
	for i := 0; i < len(data); i += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(i+chunk, len(data))
		if _, err := w.WriteAt(data[i:end], off+int64(i)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		done(int64(end))
	}
	return nil
}
