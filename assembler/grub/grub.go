// Package grub assembles GRUB's i386-pc (legacy BIOS) boot code from the files of Debian's
// grub-pc-bin package, in Go and without GRUB's host tools: the core image (what grub-mkimage
// makes: the LZMA decompressor, then GRUB's kernel with its modules, an embedded prefix and an
// optional embedded configuration, LZMA-compressed), the disk variant starting with diskboot.img
// and the CD variant starting with cdboot.img, and boot.img patched to load a core image from a
// given sector (what grub-bios-setup does).
//
// Layout of a disk core image (grub-mkimage -O i386-pc):
//
//	diskboot.img (1 sector; its last 12 bytes: blocklist of the rest)
//	lzma_decompress.img (compressed size at 0x08, uncompressed size at 0x0c)
//	LZMA stream (lc=3, lp=0, pb=2, 64 KiB dictionary, no header, no end marker) of:
//	  kernel.img's loaded bytes (_start to _edata, linked at 0x9000)
//	  module info {magic "mimg", offset 12, size}
//	  per module {type, size including this header} + data padded to 4 bytes
//
// The uncompressed payload is byte for byte what grub-mkimage produces for the same modules,
// prefix and configuration; only the LZMA encoder differs.
package grub

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ulikunitz/xz/lzma"

	"github.com/kilnproject/kiln/assembler/deb"
)

// Dir is where grub-pc-bin keeps the i386-pc files.
const Dir = "usr/lib/grub/i386-pc/"

// Errors a caller can branch on.
var (
	// ErrMissing: the package lacks a file the core image needs.
	ErrMissing = errors.New("GRUB file missing")
	// ErrTooBig: the core image does not fit where it has to go.
	ErrTooBig = errors.New("GRUB core image too big")
)

// Files holds GRUB's i386-pc files by base name (boot.img, kernel.img, normal.mod, moddep.lst, …).
type Files struct {
	Origin string // package and version, for the manifest
	files  map[string][]byte
}

// maxFile bounds each file read from the package: GRUB's largest i386-pc file is far smaller.
const maxFile = 4 << 20

// FromDeb reads the i386-pc files from a grub-pc-bin package.
func FromDeb(pkg *deb.Package) (*Files, error) {
	f := &Files{Origin: pkg.Name + " " + pkg.Version, files: map[string][]byte{}}
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(name, Dir) || strings.Contains(name[len(Dir):], "/") {
			return nil
		}
		base := name[len(Dir):]
		if !strings.HasSuffix(base, ".img") && !strings.HasSuffix(base, ".mod") && base != "moddep.lst" {
			return nil
		}
		if h.Size > maxFile {
			return fmt.Errorf("%s: %d bytes, more than a GRUB file can be", name, h.Size)
		}
		data, err := io.ReadAll(io.LimitReader(r, maxFile+1))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		f.files[base] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("grub files from %s: %w", pkg, err)
	}
	for _, need := range []string{"boot.img", "diskboot.img", "cdboot.img", "kernel.img", "lzma_decompress.img", "moddep.lst"} {
		if f.files[need] == nil {
			return nil, fmt.Errorf("grub files from %s: %w: /%s%s (name a grub-pc-bin package)", pkg, ErrMissing, Dir, need)
		}
	}
	return f, nil
}

// New makes Files from a map of base names to contents (for tests and other sources).
func New(origin string, files map[string][]byte) *Files {
	return &Files{Origin: origin, files: files}
}

// File returns one file by base name, or nil.
func (f *Files) File(name string) []byte { return f.files[name] }

// Offsets inside GRUB's i386-pc images (include/grub/offsets.h, include/grub/i386/pc/boot.h).
const (
	linkAddr          = 0x9000 // where kernel.img is linked
	decompCompressed  = 0x08   // lzma_decompress.img: compressed size
	decompUncompr     = 0x0c   // lzma_decompress.img: uncompressed size
	maxDecompressor   = 0x9000 - 0x8200
	moduleMagic       = 0x676d696d // "mimg"
	objELF            = 0
	objConfig         = 2
	objPrefix         = 3
	sectorSize        = 512
	blocklistSize     = 12
	kernelSeg         = 0x800
	bootKernelSector  = 0x5c // boot.img: 64-bit LBA of the core image's first sector
	bootDrive         = 0x64 // boot.img: boot drive, 0xff = the one the BIOS says
	bootDriveCheck    = 0x66 // boot.img: jump over the drive-number workaround
	bootBPBStart      = 0x03
	bootBPBEnd        = 0x5a
	mbrCodeEnd        = 0x1b8 // boot code ends where the disk signature begins
	hybridCoreSector  = 0x1b0 // boot_hybrid.img: 64-bit LBA of the core image (in an ISO)
	maxCoreEnd        = 0x78000
	maxKernelImageEnd = 0x68000
)

// Core describes a core image to assemble.
type Core struct {
	Modules []string // module names; their dependencies from moddep.lst are added
	Prefix  string   // $prefix, e.g. "(,gpt2)/grub"; a device left empty is the boot device
	Config  []byte   // embedded configuration (run by the rescue parser before normal), may be nil
}

// Modules resolves names and their dependencies in the order grub-mkimage loads them:
// each module after its dependencies.
func (f *Files) Modules(names []string) ([]string, error) {
	deps, err := parseModdep(f.files["moddep.lst"])
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	var add func(n string, depth int) error
	add = func(n string, depth int) error {
		if seen[n] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("moddep.lst: dependency chain of %s too deep", n)
		}
		d := deps[n]
		// grub-mkimage reads each dependency list back to front.
		for i := len(d) - 1; i >= 0; i-- {
			if err := add(d[i], depth+1); err != nil {
				return err
			}
		}
		if seen[n] {
			return nil
		}
		if f.files[n+".mod"] == nil {
			return fmt.Errorf("%w: module %s (/%s%s.mod)", ErrMissing, n, Dir, n)
		}
		seen[n] = true
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := add(n, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseModdep reads moddep.lst: "name: dep dep …" per line.
func parseModdep(b []byte) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("moddep.lst: line %q has no colon", line)
		}
		deps[strings.TrimSpace(name)] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("moddep.lst: %w", err)
	}
	return deps, nil
}

// kernel returns kernel.img's loaded bytes (from _start at 0x9000 to _edata) and the size of its
// zero-initialised data that follows.
func (f *Files) kernel() ([]byte, uint64, error) {
	ef, err := elf.NewFile(bytes.NewReader(f.files["kernel.img"]))
	if err != nil {
		return nil, 0, fmt.Errorf("kernel.img: %w", err)
	}
	defer ef.Close()
	if ef.Class != elf.ELFCLASS32 || ef.Machine != elf.EM_386 {
		return nil, 0, fmt.Errorf("kernel.img: not an i386 ELF image")
	}
	var load *elf.Prog
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			if load != nil {
				return nil, 0, fmt.Errorf("kernel.img: more than one loadable segment")
			}
			load = p
		}
	}
	if load == nil || load.Vaddr != linkAddr || load.Filesz > maxKernelImageEnd || load.Memsz < load.Filesz {
		return nil, 0, fmt.Errorf("kernel.img: no loadable segment at %#x", linkAddr)
	}
	data := make([]byte, load.Filesz)
	if _, err := load.ReadAt(data, 0); err != nil {
		return nil, 0, fmt.Errorf("kernel.img: %w", err)
	}
	return data, load.Memsz - load.Filesz, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// Payload returns the uncompressed part of the core image: the kernel, then the modules, the
// configuration and the prefix.
func (f *Files) Payload(c Core) ([]byte, error) {
	kern, bss, err := f.kernel()
	if err != nil {
		return nil, err
	}
	mods, err := f.Modules(c.Modules)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(kern)
	mods32 := func(v ...uint32) {
		for _, x := range v {
			binary.Write(&buf, binary.LittleEndian, x)
		}
	}
	start := buf.Len()
	mods32(moduleMagic, 12, 0) // size patched below
	pad := func(n int) { buf.Write(make([]byte, align4(n)-n)) }
	for _, m := range mods {
		data := f.files[m+".mod"]
		mods32(objELF, uint32(align4(len(data))+8))
		buf.Write(data)
		pad(len(data))
	}
	if c.Config != nil {
		n := align4(len(c.Config) + 1)
		mods32(objConfig, uint32(n+8))
		buf.Write(c.Config)
		buf.Write(make([]byte, n-len(c.Config)))
	}
	if c.Prefix != "" {
		n := align4(len(c.Prefix) + 1)
		mods32(objPrefix, uint32(n+8))
		buf.WriteString(c.Prefix)
		buf.Write(make([]byte, n-len(c.Prefix)))
	}
	out := buf.Bytes()
	binary.LittleEndian.PutUint32(out[start+8:], uint32(len(out)-start))
	if linkAddr+uint64(len(kern))+bss > maxKernelImageEnd {
		return nil, fmt.Errorf("%w: kernel.img ends at %#x, past %#x", ErrTooBig, linkAddr+uint64(len(kern))+bss, maxKernelImageEnd)
	}
	return out, nil
}

// compress encodes p the way grub-mkimage does for i386-pc: raw LZMA, lc=3 lp=0 pb=2, 64 KiB
// dictionary, the size known to the decoder (no header, no end marker).
func compress(p []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := lzma.WriterConfig{Properties: &lzma.Properties{LC: 3, LP: 0, PB: 2}, DictCap: 1 << 16,
		Size: int64(len(p))}.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(p); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	const header = 13 // properties, dictionary size, uncompressed size
	return buf.Bytes()[header:], nil
}

// body is lzma_decompress.img followed by the compressed payload.
func (f *Files) body(c Core) ([]byte, error) {
	payload, err := f.Payload(c)
	if err != nil {
		return nil, err
	}
	comp, err := compress(payload)
	if err != nil {
		return nil, fmt.Errorf("compress core image: %w", err)
	}
	dec := bytes.Clone(f.files["lzma_decompress.img"])
	if len(dec) < 0x20 || len(dec) > maxDecompressor {
		return nil, fmt.Errorf("lzma_decompress.img: %d bytes, not GRUB's i386-pc decompressor", len(dec))
	}
	binary.LittleEndian.PutUint32(dec[decompCompressed:], uint32(len(comp)))
	binary.LittleEndian.PutUint32(dec[decompUncompr:], uint32(len(payload)))
	body := append(dec, comp...)
	if linkAddr+len(body) > maxCoreEnd || len(body) > 0xffff*sectorSize {
		return nil, fmt.Errorf("%w: %d bytes (the real-mode limit is %d): embed fewer modules", ErrTooBig, len(body), maxCoreEnd-linkAddr)
	}
	return body, nil
}

// DiskCore assembles a core image to be written to consecutive sectors from lba on: diskboot.img
// whose blocklist loads the rest, then the decompressor and the compressed kernel. The result is
// padded to whole sectors.
func (f *Files) DiskCore(c Core, lba uint64) ([]byte, error) {
	body, err := f.body(c)
	if err != nil {
		return nil, err
	}
	boot := bytes.Clone(f.files["diskboot.img"])
	if len(boot) != sectorSize {
		return nil, fmt.Errorf("diskboot.img: %d bytes, want %d", len(boot), sectorSize)
	}
	n := (len(body) + sectorSize - 1) / sectorSize
	bl := boot[sectorSize-blocklistSize:]
	if binary.LittleEndian.Uint16(bl[10:]) != kernelSeg+sectorSize>>4 {
		return nil, fmt.Errorf("diskboot.img: blocklist segment %#x is not GRUB's", binary.LittleEndian.Uint16(bl[10:]))
	}
	binary.LittleEndian.PutUint64(bl[0:], lba+1)
	binary.LittleEndian.PutUint16(bl[8:], uint16(n))
	out := append(boot, body...)
	return append(out, make([]byte, (n+1)*sectorSize-len(out))...), nil
}

// CDCore assembles the El Torito boot image (grub-mkimage -O i386-pc-eltorito): cdboot.img, which
// loads the whole file through the boot information table, then a disk core image whose blocklist
// starts at lba, the sector (of 512 bytes) where its diskboot.img part lies when the ISO is read
// as a disk; boot_hybrid.img in the MBR jumps there when the ISO is written to a USB stick.
func (f *Files) CDCore(c Core, lba uint64) ([]byte, error) {
	cd := f.files["cdboot.img"]
	if len(cd) != 2048 {
		return nil, fmt.Errorf("cdboot.img: %d bytes, want 2048", len(cd))
	}
	disk, err := f.DiskCore(c, lba)
	if err != nil {
		return nil, err
	}
	return append(bytes.Clone(cd), disk...), nil
}

// BootSector returns the 440 bytes of MBR boot code (boot.img up to the disk signature) that
// load a disk core image starting at sector lba from the boot drive.
func (f *Files) BootSector(lba uint64) ([]byte, error) {
	b := f.files["boot.img"]
	if len(b) != sectorSize || b[510] != 0x55 || b[511] != 0xaa {
		return nil, fmt.Errorf("boot.img: not a 512-byte boot sector")
	}
	code := bytes.Clone(b[:mbrCodeEnd])
	clear(code[bootBPBStart:bootBPBEnd]) // no BIOS parameter block on a partitioned disk
	binary.LittleEndian.PutUint64(code[bootKernelSector:], lba)
	code[bootDrive] = 0xff
	// A hard disk: take the drive number as given (grub-bios-setup's workaround for BIOSes that
	// pass 0 or 1 when they booted 0x80 turns into two NOPs).
	code[bootDriveCheck], code[bootDriveCheck+1] = 0x90, 0x90
	return code, nil
}

// HybridBootSector returns the 432 bytes of boot_hybrid.img that start an ISO written to a USB
// stick: the caller stores the core image's 512-byte sector (El Torito image LBA × 4 + 4) as a
// 64-bit value at offset 432 (grub-mkrescue, through xorriso's --grub2-mbr, does the same).
func (f *Files) HybridBootSector(coreLBA uint64) ([]byte, error) {
	b := f.files["boot_hybrid.img"]
	if len(b) != sectorSize {
		return nil, fmt.Errorf("%w: boot_hybrid.img (a grub-pc-bin package from GRUB 2.02 on)", ErrMissing)
	}
	code := bytes.Clone(b[:mbrCodeEnd])
	binary.LittleEndian.PutUint64(code[hybridCoreSector:], coreLBA)
	return code, nil
}

// List returns the base names of the files, sorted.
func (f *Files) List() []string {
	var names []string
	for n := range f.files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
