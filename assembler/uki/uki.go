// Package uki builds Unified Kernel Images: systemd's EFI stub (linuxx64.efi.stub, linuxaa64.efi.stub) with the
// kernel, the initramfs, the kernel command line and os-release appended as PE sections, the way
// systemd's ukify does it (and objcopy --add-section --change-section-vma did before it).
//
// Layout: the stub is copied unchanged except for its headers (and a trailing COFF symbol table,
// which an image file should not carry and which ukify strips as well). The new section headers go
// into the free space after the stub's section table (zeros, or the NOP filler of the aa64 stub's
// header page); Build fails with ErrNoHeaderRoom when there is none rather than shifting the
// stub's sections. The sections follow in the order .osrel,
// .cmdline, .uname, .initrd, .linux — .linux last, as ukify does, so that nothing lies behind the
// kernel in memory. Each new section starts on a page boundary (a multiple of the stub's
// SectionAlignment and of 4 KiB) after the end of the previous one, its raw data on a FileAlignment
// boundary at the end of the file; VirtualSize is the exact payload length, which is what
// systemd-stub reads as the section size. SizeOfImage, SizeOfHeaders, SizeOfCode,
// SizeOfInitializedData and the PE checksum are updated. The stub 252 looks its sections up by name
// in the loaded image, so order and addresses only have to be valid PE.
package uki

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Errors a caller can branch on.
var (
	ErrNotPE        = errors.New("not a PE/COFF image")
	ErrSigned       = errors.New("stub carries an Authenticode signature; use an unsigned stub and sign the UKI afterwards")
	ErrNoHeaderRoom = errors.New("no room for more section headers in the stub's PE header")
	ErrNoKernel     = errors.New("no kernel given")
)

// Input is what goes into a UKI.
type Input struct {
	Stub      []byte // linuxx64.efi.stub (systemd-boot-efi)
	Kernel    []byte // bzImage (vmlinuz)
	Initrd    []byte // compressed cpio, may be empty
	Cmdline   string // kernel command line; surrounding white space is removed
	OSRelease string // os-release(5) text shown by systemd-boot
	Uname     string // kernel release (uname -r), optional
}

// Section characteristics (PE/COFF).
const (
	scnCode     = 0x00000020
	scnInitData = 0x00000040
	scnMemRead  = 0x40000000
)

const (
	sectionHeaderSize     = 40
	pageSize              = 4096
	symbolSize            = 18
	fileLocalSymsStripped = 0x0008
)

// header holds the offsets of the fields Build edits.
type header struct {
	coff      int // COFF file header
	opt       int // optional header
	optSize   int
	secTable  int
	nsec      int
	pe32plus  bool
	fileAlign uint32
	secAlign  uint32
}

func (h *header) dataDir(i int) int {
	if h.pe32plus {
		return h.opt + 112 + 8*i
	}
	return h.opt + 96 + 8*i
}

func (h *header) numDirs(b []byte) int {
	if h.pe32plus {
		return int(le.Uint32(b[h.opt+108:]))
	}
	return int(le.Uint32(b[h.opt+92:]))
}

var le = binary.LittleEndian

func parseHeader(b []byte) (*header, error) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return nil, fmt.Errorf("%w: no MZ signature", ErrNotPE)
	}
	pe := int(le.Uint32(b[0x3c:]))
	if pe < 0x40 || pe+24 > len(b) || !bytes.Equal(b[pe:pe+4], []byte("PE\x00\x00")) {
		return nil, fmt.Errorf("%w: no PE signature", ErrNotPE)
	}
	h := &header{coff: pe + 4, opt: pe + 24}
	h.nsec = int(le.Uint16(b[h.coff+2:]))
	h.optSize = int(le.Uint16(b[h.coff+16:]))
	h.secTable = h.opt + h.optSize
	if h.optSize < 96 || h.secTable+sectionHeaderSize*h.nsec > len(b) {
		return nil, fmt.Errorf("%w: truncated headers", ErrNotPE)
	}
	switch le.Uint16(b[h.opt:]) {
	case 0x20b:
		h.pe32plus = true
		if h.optSize < 112 {
			return nil, fmt.Errorf("%w: short PE32+ optional header", ErrNotPE)
		}
	case 0x10b:
	default:
		return nil, fmt.Errorf("%w: unknown optional header magic %#x", ErrNotPE, le.Uint16(b[h.opt:]))
	}
	h.secAlign = le.Uint32(b[h.opt+32:])
	h.fileAlign = le.Uint32(b[h.opt+36:])
	if !pow2(h.fileAlign) || !pow2(h.secAlign) || h.fileAlign < 512 && h.fileAlign != h.secAlign || h.secAlign < h.fileAlign {
		return nil, fmt.Errorf("%w: bad alignment (section %#x, file %#x)", ErrNotPE, h.secAlign, h.fileAlign)
	}
	return h, nil
}

func pow2(v uint32) bool { return v != 0 && v&(v-1) == 0 }

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

type newSection struct {
	name  string
	data  []byte
	flags uint32
}

// Build returns a UKI made of in.Stub with the other inputs appended as sections. It does not
// modify its inputs.
func Build(in Input) ([]byte, error) {
	if len(in.Kernel) == 0 {
		return nil, ErrNoKernel
	}
	h, err := parseHeader(in.Stub)
	if err != nil {
		return nil, fmt.Errorf("uki: stub: %w", err)
	}
	var add []newSection
	data := func(name string, b []byte) {
		if len(b) > 0 {
			add = append(add, newSection{name, b, scnInitData | scnMemRead})
		}
	}
	data(".osrel", []byte(in.OSRelease))
	data(".cmdline", []byte(strings.TrimSpace(in.Cmdline)))
	data(".uname", []byte(strings.TrimSpace(in.Uname)))
	data(".initrd", in.Initrd)
	// ukify marks .linux as code: old kernels booted through the EFI handover protocol run in place.
	add = append(add, newSection{".linux", in.Kernel, scnCode | scnMemRead})

	out := bytes.Clone(in.Stub)
	if h.numDirs(out) > 4 && le.Uint32(out[h.dataDir(4)+4:]) != 0 {
		return nil, fmt.Errorf("uki: stub: %w", ErrSigned)
	}

	// Strip a trailing COFF symbol table (with its string table), as ukify does.
	if sym := int(le.Uint32(out[h.coff+8:])); sym != 0 {
		size := symbolSize * int(le.Uint32(out[h.coff+12:]))
		if sym+size+4 <= len(out) {
			size += int(le.Uint32(out[sym+size:]))
		}
		if sym+size == len(out) {
			out = out[:sym]
			le.PutUint32(out[h.coff+8:], 0)
			le.PutUint32(out[h.coff+12:], 0)
			le.PutUint16(out[h.coff+18:], le.Uint16(out[h.coff+18:])|fileLocalSymsStripped)
		}
	}

	old, err := readSections(out, h)
	if err != nil {
		return nil, fmt.Errorf("uki: stub: %w", err)
	}
	firstRaw := uint64(len(out))
	var end uint64 // end of the image in memory
	for _, s := range old {
		for _, n := range add {
			if s.Name == n.name {
				return nil, fmt.Errorf("uki: stub already has a %s section", n.name)
			}
		}
		if s.Size > 0 {
			if uint64(s.Offset)%uint64(h.fileAlign) != 0 {
				return nil, fmt.Errorf("uki: stub: section %s raw data at %#x is not aligned to %#x", s.Name, s.Offset, h.fileAlign)
			}
			firstRaw = min(firstRaw, uint64(s.Offset))
		}
		end = max(end, uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}

	// Header room: the new section headers must fit before SizeOfHeaders (rounded up to the file
	// alignment, which the first section's raw data never precedes) in space that is unused.
	sizeOfHeaders := alignUp(uint64(le.Uint32(out[h.opt+60:])), uint64(h.fileAlign))
	limit := min(sizeOfHeaders, firstRaw)
	tableEnd := uint64(h.secTable + sectionHeaderSize*h.nsec)
	need := tableEnd + uint64(sectionHeaderSize*len(add))
	if need > limit {
		return nil, fmt.Errorf("uki: stub: %w: %d section headers need %d bytes after offset %#x, %d are free",
			ErrNoHeaderRoom, len(add), sectionHeaderSize*len(add), tableEnd, int64(limit)-int64(tableEnd))
	}
	if !padding(out[tableEnd:need], tableEnd) {
		return nil, fmt.Errorf("uki: stub: %w: the space after the section table is in use", ErrNoHeaderRoom)
	}
	clear(out[tableEnd:need])
	le.PutUint32(out[h.opt+60:], uint32(sizeOfHeaders))

	vAlign := uint64(max(h.secAlign, pageSize))
	fAlign := uint64(h.fileAlign)
	sizeOfCode := uint64(le.Uint32(out[h.opt+4:]))
	sizeOfInit := uint64(le.Uint32(out[h.opt+8:]))
	for i, s := range add {
		va := alignUp(end, vAlign)
		raw := alignUp(uint64(len(out)), fAlign)
		rawSize := alignUp(uint64(len(s.data)), fAlign)
		if va+uint64(len(s.data)) > 1<<32-1 || raw+rawSize > 1<<32-1 {
			return nil, fmt.Errorf("uki: section %s: image would exceed 4 GiB", s.name)
		}
		out = append(out, make([]byte, raw-uint64(len(out)))...)
		out = append(out, s.data...)
		out = append(out, make([]byte, rawSize-uint64(len(s.data)))...)

		sh := out[tableEnd+uint64(sectionHeaderSize*i):][:sectionHeaderSize]
		copy(sh[0:8], s.name)
		le.PutUint32(sh[8:], uint32(len(s.data))) // VirtualSize: the exact payload size
		le.PutUint32(sh[12:], uint32(va))
		le.PutUint32(sh[16:], uint32(rawSize))
		le.PutUint32(sh[20:], uint32(raw))
		le.PutUint32(sh[36:], s.flags)
		if s.flags&scnCode != 0 {
			sizeOfCode += rawSize
		} else {
			sizeOfInit += rawSize
		}
		end = va + uint64(len(s.data))
	}
	if sizeOfCode > 1<<32-1 || sizeOfInit > 1<<32-1 {
		return nil, errors.New("uki: image would exceed 4 GiB")
	}
	le.PutUint16(out[h.coff+2:], uint16(h.nsec+len(add)))
	le.PutUint32(out[h.opt+4:], uint32(sizeOfCode))
	le.PutUint32(out[h.opt+8:], uint32(sizeOfInit))
	le.PutUint32(out[h.opt+56:], uint32(alignUp(end, uint64(h.secAlign))))
	le.PutUint32(out[h.opt+64:], Checksum(out))
	return out, nil
}

// arm64NOP is the AArch64 NOP instruction (little-endian) that linkers fill the header page of
// systemd's aa64 stub with.
var arm64NOP = []byte{0x1f, 0x20, 0x03, 0xd5}

// padding reports whether b (at file offset off) is filler the new section headers may overwrite:
// zeros, or AArch64 NOPs on their 4-byte grid.
func padding(b []byte, off uint64) bool {
	for i := range b {
		if b[i] != 0 && b[i] != arm64NOP[(off+uint64(i))%4] {
			return false
		}
	}
	return true
}

// Checksum computes the PE image checksum (the algorithm of Windows' CheckSumMappedFile): the
// 16-bit one's-complement-style sum of the file with the CheckSum field taken as zero, plus the
// file length.
func Checksum(b []byte) uint32 {
	h, err := parseHeader(b)
	if err != nil {
		return 0
	}
	skip := h.opt + 64
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		if i == skip || i == skip+2 {
			continue
		}
		sum += uint64(le.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}
