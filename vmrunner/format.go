package vmrunner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Errors about the image that a front end shows as they are.
var (
	ErrImageNotFound = errors.New("image not found")
	ErrUnknownFormat = errors.New("unknown image format")
)

// ImageInfo is what Inspect learns from an image's first sectors.
type ImageInfo struct {
	Format Format
	// EFI is true when the image carries an EFI system partition (GPT or MBR type 0xEF) or an
	// El Torito EFI boot entry: such images boot under UEFI.
	EFI bool
	// Size is the file's size in bytes.
	Size int64
}

// Firmware is the firmware an image boots with when the user does not choose: UEFI when it
// carries an EFI system partition or El Torito EFI entry (hybrid images too), else BIOS (SeaBIOS).
func (i ImageInfo) Firmware() FirmwareKind {
	if i.EFI {
		return FirmwareUEFI
	}
	return FirmwareBIOS
}

// Inspect detects an image's format (raw, qcow2, ISO 9660) and whether it is made for UEFI.
func Inspect(path string) (ImageInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ImageInfo{}, fmt.Errorf("image %s: %w (check the path)", path, ErrImageNotFound)
		}
		return ImageInfo{}, fmt.Errorf("image %s: cannot read it: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	if st.IsDir() {
		return ImageInfo{}, fmt.Errorf("image %s: is a directory, not an image file", path)
	}
	info, err := inspect(f, st.Size())
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	return info, nil
}

func inspect(r io.ReaderAt, size int64) (ImageInfo, error) {
	info := ImageInfo{Size: size}
	head := make([]byte, 64<<10)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return info, fmt.Errorf("cannot read it: %w", err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		info.Format = FormatQCOW2
		if q, err := newQCOW2(r, head); err == nil {
			info.EFI = hasESP(q)
		}
		return info, nil
	case len(head) >= 0x8006 && string(head[0x8001:0x8006]) == "CD001":
		info.Format = FormatISO
		info.EFI = isoHasEFI(r) || hasESP(r) // hybrid ISOs also carry a partition table
		return info, nil
	}
	mbr := len(head) >= 512 && head[510] == 0x55 && head[511] == 0xaa
	gpt := len(head) >= 520 && string(head[512:520]) == "EFI PART" ||
		len(head) >= 4104 && string(head[4096:4104]) == "EFI PART"
	if mbr || gpt {
		info.Format = FormatRaw
		info.EFI = hasESP(r)
		return info, nil
	}
	if what := knownNonImage(head); what != "" {
		return info, fmt.Errorf("%w: %s", ErrUnknownFormat, what)
	}
	return info, fmt.Errorf("%w: no partition table, qcow2 header or ISO 9660 volume found (pass --format raw to boot it anyway)", ErrUnknownFormat)
}

// knownNonImage names the formats users mistake for disk images, with what to do about them.
func knownNonImage(head []byte) string {
	magic := []struct{ prefix, what string }{
		{"\xfd7zXZ\x00", "the file is xz-compressed; decompress it first (xz -dk FILE)"},
		{"\x1f\x8b", "the file is gzip-compressed; decompress it first (gunzip -k FILE)"},
		{"\x28\xb5\x2f\xfd", "the file is zstd-compressed; decompress it first (zstd -d FILE)"},
		{"BZh", "the file is bzip2-compressed; decompress it first (bunzip2 -k FILE)"},
		{"PK\x03\x04", "the file is a zip archive; extract the image from it first"},
		{"KDMV", "the file is a VMDK image; convert it (qemu-img convert -O qcow2 FILE out.qcow2)"},
		{"vhdxfile", "the file is a VHDX image; convert it (qemu-img convert -O qcow2 FILE out.qcow2)"},
		{"conectix", "the file is a VHD image; convert it (qemu-img convert -O qcow2 FILE out.qcow2)"},
	}
	for _, m := range magic {
		if bytes.HasPrefix(head, []byte(m.prefix)) {
			return m.what
		}
	}
	if len(head) >= 0x48 && string(head[0x40:0x44]) == "\x7f\x10\xda\xbe" {
		return "the file is a VirtualBox VDI image; convert it (qemu-img convert -O qcow2 FILE out.qcow2)"
	}
	return ""
}

var espGUID = []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}

// hasESP reports whether the disk's MBR or GPT (512- or 4096-byte sectors) holds an EFI system partition.
func hasESP(r io.ReaderAt) bool {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return false
	}
	if mbr[510] == 0x55 && mbr[511] == 0xaa {
		for i := 0; i < 4; i++ {
			if mbr[446+16*i+4] == 0xef {
				return true
			}
		}
	}
	for _, sector := range []int64{512, 4096} {
		hdr := make([]byte, 92)
		if _, err := r.ReadAt(hdr, sector); err != nil || string(hdr[:8]) != "EFI PART" {
			continue
		}
		lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
		count := int64(binary.LittleEndian.Uint32(hdr[80:]))
		size := int64(binary.LittleEndian.Uint32(hdr[84:]))
		if size < 128 || size > 4096 || count > 1024 {
			continue
		}
		entries := make([]byte, count*size)
		if _, err := r.ReadAt(entries, lba*sector); err != nil && err != io.EOF {
			continue
		}
		for i := int64(0); i+1 <= count && (i+1)*size <= int64(len(entries)); i++ {
			if bytes.Equal(entries[i*size:i*size+16], espGUID) {
				return true
			}
		}
	}
	return false
}

// isoHasEFI reports whether an ISO 9660 image's El Torito boot catalog has an EFI (platform 0xEF) entry.
func isoHasEFI(r io.ReaderAt) bool {
	brvd := make([]byte, 2048)
	if _, err := r.ReadAt(brvd, 17*2048); err != nil {
		return false
	}
	if brvd[0] != 0 || string(brvd[1:6]) != "CD001" || !bytes.HasPrefix(brvd[7:], []byte("EL TORITO SPECIFICATION")) {
		return false
	}
	cat := make([]byte, 2048)
	if _, err := r.ReadAt(cat, int64(binary.LittleEndian.Uint32(brvd[0x47:]))*2048); err != nil && err != io.EOF {
		return false
	}
	if cat[0] != 1 {
		return false
	}
	if cat[1] == 0xef {
		return true
	}
	// After the validation and default entries: section headers (0x90, or 0x91 for the last one),
	// each followed by its entries.
	for off := 64; off+32 <= len(cat); {
		h := cat[off]
		if h != 0x90 && h != 0x91 {
			break
		}
		if cat[off+1] == 0xef {
			return true
		}
		off += 32 * (1 + int(binary.LittleEndian.Uint16(cat[off+2:])))
		if h == 0x91 {
			break
		}
	}
	return false
}

// qcow2 is a read-only view of the guest data of a qcow2 image's first clusters, enough to read a
// partition table. Compressed clusters, backing files and extended L2 entries read as unavailable.
type qcow2 struct {
	r           io.ReaderAt
	clusterBits uint32
	l1          uint64
}

func newQCOW2(r io.ReaderAt, head []byte) (*qcow2, error) {
	if len(head) < 104 {
		return nil, errors.New("short qcow2 header")
	}
	be := binary.BigEndian
	q := &qcow2{r: r, clusterBits: be.Uint32(head[20:]), l1: be.Uint64(head[40:])}
	if q.clusterBits < 9 || q.clusterBits > 21 || be.Uint64(head[8:]) != 0 {
		return nil, errors.New("unsupported qcow2 layout")
	}
	if be.Uint32(head[4:]) >= 3 && be.Uint64(head[72:])&^1 != 0 { // incompatible features other than "dirty"
		return nil, errors.New("unsupported qcow2 features")
	}
	return q, nil
}

func (q *qcow2) ReadAt(p []byte, off int64) (int, error) {
	be := binary.BigEndian
	csize := int64(1) << q.clusterBits
	perL2 := csize / 8
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		cluster := pos / csize
		var ent [8]byte
		if _, err := q.r.ReadAt(ent[:], int64(q.l1)+8*(cluster/perL2)); err != nil {
			return done, err
		}
		l2 := be.Uint64(ent[:]) & 0x00fffffffffffe00
		n := min(int64(len(p)-done), csize-pos%csize)
		chunk := p[done : done+int(n)]
		if l2 == 0 {
			clear(chunk)
		} else {
			if _, err := q.r.ReadAt(ent[:], int64(l2)+8*(cluster%perL2)); err != nil {
				return done, err
			}
			e := be.Uint64(ent[:])
			if e&(1<<62) != 0 {
				return done, errors.New("compressed qcow2 cluster")
			}
			data := e & 0x00fffffffffffe00
			if data == 0 {
				clear(chunk)
			} else if _, err := q.r.ReadAt(chunk, int64(data)+pos%csize); err != nil {
				return done, err
			}
		}
		done += int(n)
	}
	return done, nil
}
