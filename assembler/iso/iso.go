// Package iso writes bootable hybrid ISO 9660 images: go-diskfs lays out the file system and the
// El Torito boot catalog (a BIOS no-emulation entry with a boot information table, and a UEFI
// entry pointing at an EFI system partition image); this package then makes the result
// reproducible (fixed volume dates instead of the clock's) and hybrid, as xorriso's
// -isohybrid-mbr with -isohybrid-gpt-basdat makes Debian's installer images: in the system area,
// MBR boot code that starts the BIOS boot image when the file is written to a USB stick, and a GPT
// (with its backup in the trailing padding) whose one partition, an EFI system partition, is the
// El Torito EFI image, so UEFI firmware finds it on a disk too. The MBR is a hybrid one: a GPT
// protective entry up to the EFI image and an active entry of type 0xEF over it, for firmware that
// reads only MBRs. Unlike xorriso's, the tables hold no overlapping partitions, so sgdisk -v and
// fdisk accept them.
package iso

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kilnproject/kiln/internal/bmap"
)

// SectorSize is the ISO 9660 logical block size.
const SectorSize = 2048

// File is a file of the image. Paths use '/' and are stored in upper case (ISO 9660 level 1
// names: at most 8 characters, a dot and 3 more, letters, digits and '_').
type File struct {
	Path string
	Data []byte
	// Write, when Data is nil, writes the file's contents into f (e.g. a file system image built
	// in place) and returns an error or nil.
	Write func(ctx context.Context, f *os.File) error
}

// Options describe the boot setup.
type Options struct {
	VolumeID string    // up to 32 characters A-Z 0-9 _
	ModTime  time.Time // the time of every file, directory and of the volume (SOURCE_DATE_EPOCH)
	BIOSBoot string    // path of the BIOS no-emulation boot image (gets a boot information table)
	EFIBoot  string    // path of the EFI system partition image
	// PatchBIOS, when set, returns the BIOS boot image's final contents (the same size) once its
	// place is known: lba is its first 2048-byte block.
	PatchBIOS func(lba uint32) ([]byte, error)
	// MBRCode, when set, returns up to 440 bytes of MBR boot code for the BIOS boot image at lba;
	// the image then gets an MBR (hybrid ISO).
	MBRCode       func(lba uint32) ([]byte, error)
	DiskSignature uint32 // MBR disk signature
	// DiskGUID and ESPGUID name the GPT and its EFI system partition (hybrid images with an EFI
	// boot image); fixed values keep the image reproducible.
	DiskGUID, ESPGUID string
}

// Result says where the boot images landed.
type Result struct {
	Size                int64
	BIOSBootLBA         uint32 // 2048-byte blocks
	EFIBootLBA          uint32
	EFIBootSize         int64
	CatalogLBA          uint32
	EFIPartitionStart   int64 // bytes, the MBR and GPT partition over the EFI image (hybrid only)
	EFIPartitionSectors int64 // 512-byte sectors
}

// levelOneName reports whether s is an ISO 9660 level 1 name (upper case 8.3).
func levelOneName(s string) bool {
	base, ext, _ := strings.Cut(s, ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") {
		return false
	}
	for _, c := range base + ext {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Write creates the image at path. On error the partial image is removed.
func Write(ctx context.Context, out string, files []File, opts Options) (res *Result, err error) {
	ws, err := os.MkdirTemp(filepath.Dir(out), ".iso-")
	if err != nil {
		return nil, fmt.Errorf("iso %s: workspace: %w", out, err)
	}
	defer os.RemoveAll(ws)
	defer func() {
		if err != nil {
			os.Remove(out)
			err = fmt.Errorf("iso %s: %w", out, err)
		}
	}()
	dirs := map[string]bool{}
	for _, f := range files {
		p := strings.ToUpper(strings.Trim(f.Path, "/"))
		for _, part := range strings.Split(p, "/") {
			if !levelOneName(part) {
				return nil, fmt.Errorf("file %s: %q is not an ISO 9660 level 1 name (8.3, A-Z 0-9 _)", f.Path, part)
			}
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
		dst := filepath.Join(ws, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := writeFile(ctx, dst, f); err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Path, err)
		}
		if err := os.Chtimes(dst, opts.ModTime, opts.ModTime); err != nil {
			return nil, err
		}
	}
	for d := range dirs {
		if err := os.Chtimes(filepath.Join(ws, filepath.FromSlash(d)), opts.ModTime, opts.ModTime); err != nil {
			return nil, err
		}
	}
	if err := os.Chtimes(ws, opts.ModTime, opts.ModTime); err != nil {
		return nil, err
	}
	var efiSize int64
	if opts.EFIBoot != "" {
		st, err := os.Stat(filepath.Join(ws, filepath.FromSlash(strings.ToUpper(strings.Trim(opts.EFIBoot, "/")))))
		if err != nil {
			return nil, fmt.Errorf("EFI boot image: %w", err)
		}
		efiSize = st.Size()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, SectorSize, ws)
	if err != nil {
		return nil, err
	}
	et := &iso9660.ElTorito{BootCatalog: "/BOOT.CAT", HideBootCatalog: true}
	if opts.BIOSBoot != "" {
		et.Entries = append(et.Entries, &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation,
			BootFile: strings.ToUpper(opts.BIOSBoot), BootTable: true})
	}
	if opts.EFIBoot != "" {
		et.Entries = append(et.Entries, &iso9660.ElToritoEntry{Platform: iso9660.EFI, Emulation: iso9660.NoEmulation,
			BootFile: strings.ToUpper(opts.EFIBoot)})
	}
	fo := iso9660.FinalizeOptions{VolumeIdentifier: opts.VolumeID}
	if len(et.Entries) > 0 {
		fo.ElTorito = et
	}
	if err := fsys.Finalize(fo); err != nil {
		return nil, fmt.Errorf("lay out: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res = &Result{EFIBootSize: efiSize}
	if err := fixDates(f, opts.ModTime); err != nil {
		return nil, err
	}
	if len(et.Entries) > 0 {
		if err := res.readCatalog(f, opts); err != nil {
			return nil, err
		}
	}
	if err := pad(f); err != nil {
		return nil, err
	}
	if opts.PatchBIOS != nil && opts.BIOSBoot != "" {
		if err := patchBIOS(f, res.BIOSBootLBA, opts.PatchBIOS); err != nil {
			return nil, err
		}
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	res.Size = st.Size()
	if opts.MBRCode != nil {
		if err := res.writeMBR(f, opts); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func writeFile(ctx context.Context, dst string, f File) error {
	if f.Data != nil || f.Write == nil {
		return os.WriteFile(dst, f.Data, 0o644)
	}
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := f.Write(ctx, w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Padding is the zero blocks added after the file system, inside the volume, as mkisofs and
// xorriso do: BIOS CD drivers (GRUB's through SeaBIOS, for one) read ahead in whole chunks and
// return garbage for a file that ends right at the end of the medium.
const Padding = 150

// pad appends Padding blocks and counts them in the volume size.
func pad(f *os.File) error {
	pvd := make([]byte, SectorSize)
	if _, err := f.ReadAt(pvd, 16*SectorSize); err != nil {
		return fmt.Errorf("read volume descriptor: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	blocks := (st.Size()+SectorSize-1)/SectorSize + Padding
	if err := f.Truncate(blocks * SectorSize); err != nil {
		return fmt.Errorf("pad: %w", err)
	}
	binary.LittleEndian.PutUint32(pvd[80:], uint32(blocks))
	binary.BigEndian.PutUint32(pvd[84:], uint32(blocks))
	_, err = f.WriteAt(pvd, 16*SectorSize)
	return err
}

// isoDate is the 17-byte volume descriptor date format: "YYYYMMDDHHMMSScc" and a zone byte.
func isoDate(t time.Time) []byte {
	if t.IsZero() {
		return append(bytes.Repeat([]byte{'0'}, 16), 0)
	}
	return append([]byte(t.UTC().Format("20060102150405")+"00"), 0)
}

// fixDates replaces the clock times go-diskfs writes into the primary volume descriptor:
// creation and modification become t, expiration and effective "not specified".
func fixDates(f *os.File, t time.Time) error {
	pvd := make([]byte, SectorSize)
	if _, err := f.ReadAt(pvd, 16*SectorSize); err != nil {
		return fmt.Errorf("read volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return errors.New("no primary volume descriptor at block 16")
	}
	copy(pvd[813:], isoDate(t))
	copy(pvd[830:], isoDate(t))
	copy(pvd[847:], isoDate(time.Time{}))
	copy(pvd[864:], isoDate(time.Time{}))
	_, err := f.WriteAt(pvd, 16*SectorSize)
	return err
}

// readCatalog finds the boot catalog through the boot record volume descriptor and the boot
// images' blocks in it.
func (res *Result) readCatalog(f *os.File, opts Options) error {
	for blk := int64(17); blk < 32; blk++ {
		vd := make([]byte, SectorSize)
		if _, err := f.ReadAt(vd, blk*SectorSize); err != nil {
			return fmt.Errorf("read volume descriptors: %w", err)
		}
		if string(vd[1:6]) != "CD001" || vd[0] == 255 {
			break
		}
		if vd[0] == 0 && bytes.HasPrefix(vd[7:], []byte("EL TORITO SPECIFICATION")) {
			res.CatalogLBA = binary.LittleEndian.Uint32(vd[0x47:])
		}
	}
	if res.CatalogLBA == 0 {
		return errors.New("no El Torito boot record")
	}
	cat := make([]byte, SectorSize)
	if _, err := f.ReadAt(cat, int64(res.CatalogLBA)*SectorSize); err != nil {
		return fmt.Errorf("read boot catalog: %w", err)
	}
	// The validation entry, the initial entry, then a section header and an entry per further
	// image; the entries are in the order Write adds them.
	var lbas []uint32
scan:
	for off := 32; off+32 <= len(cat); off += 32 {
		switch cat[off] {
		case 0x88:
			lbas = append(lbas, binary.LittleEndian.Uint32(cat[off+8:]))
		case 0x90, 0x91:
		default:
			break scan
		}
	}
	if opts.BIOSBoot != "" && len(lbas) > 0 {
		res.BIOSBootLBA, lbas = lbas[0], lbas[1:]
	}
	if opts.EFIBoot != "" && len(lbas) > 0 {
		res.EFIBootLBA = lbas[0]
	}
	if (opts.BIOSBoot != "" && res.BIOSBootLBA == 0) || (opts.EFIBoot != "" && res.EFIBootLBA == 0) {
		return errors.New("boot catalog lacks an entry")
	}
	return nil
}

// patchBIOS rewrites the BIOS boot image with its final contents, keeping the boot information
// table go-diskfs wrote (bytes 8–63) and updating its checksum.
func patchBIOS(f *os.File, lba uint32, patch func(uint32) ([]byte, error)) error {
	at := int64(lba) * SectorSize
	table := make([]byte, 56)
	if _, err := f.ReadAt(table, at+8); err != nil {
		return fmt.Errorf("read boot information table: %w", err)
	}
	size := binary.LittleEndian.Uint32(table[8:])
	data, err := patch(lba)
	if err != nil {
		return err
	}
	if uint32(len(data)) != size || len(data) < 64 {
		return fmt.Errorf("patched BIOS boot image is %d bytes, not %d", len(data), size)
	}
	data = bytes.Clone(data)
	copy(data[8:], table)
	var sum uint32
	for i := 64; i+4 <= len(data); i += 4 {
		sum += binary.LittleEndian.Uint32(data[i:])
	}
	binary.LittleEndian.PutUint32(data[20:], sum)
	_, err = f.WriteAt(data, at)
	return err
}

// chs encodes a sector number as MBR cylinder/head/sector bytes (255 heads, 63 sectors), or the
// "beyond reach" value.
func chs(lba int64) [3]byte {
	c, rem := lba/(255*63), lba%(255*63)
	h, s := rem/63, rem%63+1
	if c > 1023 {
		return [3]byte{0xfe, 0xff, 0xff}
	}
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

func mbrEntry(e []byte, active bool, typ byte, start, count int64) {
	if active {
		e[0] = 0x80
	}
	a, b := chs(start), chs(start+count-1)
	copy(e[1:4], a[:])
	e[4] = typ
	copy(e[5:8], b[:])
	binary.LittleEndian.PutUint32(e[8:], uint32(start))
	binary.LittleEndian.PutUint32(e[12:], uint32(count))
}

// writeMBR makes the image hybrid: boot code and the disk signature, and, when there is an EFI
// boot image, a GPT whose EFI system partition is that image, with a hybrid MBR (a protective entry
// from sector 1 up to the EFI image, then an active type 0xEF entry over it). Without an EFI image
// the MBR's one entry (active, type 0: ignored by partition scanners, as in Debian's images) covers
// the whole image.
func (res *Result) writeMBR(f *os.File, opts Options) error {
	code, err := opts.MBRCode(res.BIOSBootLBA)
	if err != nil {
		return err
	}
	if len(code) > 440 {
		return fmt.Errorf("MBR boot code of %d bytes, at most 440 fit", len(code))
	}
	sectors := (res.Size + 511) / 512
	mbr := make([]byte, 512)
	if res.EFIBootLBA == 0 {
		mbrEntry(mbr[446:462], true, 0x00, 0, sectors)
	} else {
		res.EFIPartitionStart = int64(res.EFIBootLBA) * SectorSize
		res.EFIPartitionSectors = (res.EFIBootSize + 511) / 512
		start := res.EFIPartitionStart / 512
		if err := res.writeGPT(f, opts); err != nil {
			return err
		}
		mbrEntry(mbr[446:462], false, 0xee, 1, start-1)
		mbrEntry(mbr[462:478], true, 0xef, start, res.EFIPartitionSectors)
	}
	copy(mbr, code)
	binary.LittleEndian.PutUint32(mbr[440:], opts.DiskSignature)
	mbr[510], mbr[511] = 0x55, 0xaa
	_, err = f.WriteAt(mbr, 0)
	return err
}

// gptSectors is what one GPT copy takes at the end of the image: 128 entries of 128 bytes and
// the header.
const gptSectors = 128*128/512 + 1

// writeGPT writes both GPT copies: the primary in the ISO's unused system area (sectors 1–33),
// the backup in the padding at the end.
func (res *Result) writeGPT(f *os.File, opts Options) error {
	if Padding*SectorSize/512 < gptSectors {
		return errors.New("the padding cannot hold the backup GPT")
	}
	if opts.DiskGUID == "" || opts.ESPGUID == "" {
		return errors.New("GPT: no disk or partition GUID given")
	}
	start := uint64(res.EFIPartitionStart / 512)
	t := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, GUID: opts.DiskGUID,
		Partitions: []*gpt.Partition{{Index: 1, Start: start, End: start + uint64(res.EFIPartitionSectors) - 1,
			Size: uint64(res.EFIPartitionSectors) * 512, Type: gpt.EFISystemPartition, Name: "EFI system partition",
			GUID: opts.ESPGUID}}}
	if err := t.Write(bmap.NewRecorder(f), res.Size); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	return nil
}
