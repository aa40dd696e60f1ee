package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

const stubPath = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// realStub returns systemd-boot-efi's x86-64 stub, skipping locally (failing under CI) when it
// is not installed.
func realStub(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(stubPath)
	if err != nil {
		testenv.Missing(t, "systemd-boot-efi is not installed: %v", err)
	}
	return b
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sampleInput(stub []byte) Input {
	return Input{
		Stub:      stub,
		Kernel:    randomBytes(1_000_003, 1),
		Initrd:    randomBytes(300_001, 2),
		Cmdline:   "console=ttyS0,115200 console=tty0\n",
		OSRelease: "ID=kiln\nNAME=\"Kiln Tiny\"\nVERSION_ID=1.0.0\n",
		Uname:     "6.1.0-56-amd64",
	}
}

// validate checks the UKI with Go's debug/pe and the PE rules a firmware loader relies on.
func validate(t *testing.T, img []byte, in Input) {
	t.Helper()
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("debug/pe rejects the UKI: %v", err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		t.Fatalf("optional header %T, want PE32+", f.OptionalHeader)
	}
	fa, sa := uint64(oh.FileAlignment), uint64(oh.SectionAlignment)
	if oh.SizeOfHeaders%oh.FileAlignment != 0 {
		t.Errorf("SizeOfHeaders %#x not a multiple of FileAlignment %#x", oh.SizeOfHeaders, fa)
	}
	peOff := binary.LittleEndian.Uint32(img[0x3c:])
	tableEnd := uint64(peOff) + 24 + uint64(f.FileHeader.SizeOfOptionalHeader) + 40*uint64(len(f.Sections))
	if tableEnd > uint64(oh.SizeOfHeaders) {
		t.Errorf("section table ends at %#x, beyond SizeOfHeaders %#x", tableEnd, oh.SizeOfHeaders)
	}

	secs := append([]*pe.Section(nil), f.Sections...)
	sort.Slice(secs, func(i, j int) bool { return secs[i].VirtualAddress < secs[j].VirtualAddress })
	var memEnd, initData, code uint64
	for i, s := range secs {
		// systemd 252's stub itself places .sdmagic off the section alignment; check ours.
		if uint64(s.VirtualAddress)%sa != 0 && i >= len(secs)-5 {
			t.Errorf("%s: VirtualAddress %#x not aligned to %#x", s.Name, s.VirtualAddress, sa)
		}
		if s.VirtualAddress < oh.SizeOfHeaders {
			t.Errorf("%s: VirtualAddress %#x inside the headers", s.Name, s.VirtualAddress)
		}
		size := s.VirtualSize
		if size == 0 {
			size = s.Size
		}
		end := uint64(s.VirtualAddress) + uint64(size)
		if i+1 < len(secs) && end > uint64(secs[i+1].VirtualAddress) {
			t.Errorf("%s [%#x, %#x) overlaps %s in memory", s.Name, s.VirtualAddress, end, secs[i+1].Name)
		}
		memEnd = max(memEnd, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
		if s.Size > 0 {
			if uint64(s.Offset)%fa != 0 || uint64(s.Size)%fa != 0 {
				t.Errorf("%s: raw data %#x+%#x not aligned to %#x", s.Name, s.Offset, s.Size, fa)
			}
			if uint64(s.Offset)+uint64(s.Size) > uint64(len(img)) {
				t.Errorf("%s: raw data beyond the end of the file", s.Name)
			}
			if s.Offset < oh.SizeOfHeaders {
				t.Errorf("%s: raw data at %#x inside the headers", s.Name, s.Offset)
			}
		}
		if s.Characteristics&scnCode != 0 {
			code += uint64(s.Size)
		} else if s.Characteristics&scnInitData != 0 {
			initData += uint64(s.Size)
		}
	}
	bySize := append([]*pe.Section(nil), f.Sections...)
	sort.Slice(bySize, func(i, j int) bool { return bySize[i].Offset < bySize[j].Offset })
	for i := 0; i+1 < len(bySize); i++ {
		a, b := bySize[i], bySize[i+1]
		if a.Size > 0 && b.Size > 0 && a.Offset+a.Size > b.Offset {
			t.Errorf("raw data of %s and %s overlap in the file", a.Name, b.Name)
		}
	}
	if want := alignUp(memEnd, sa); uint64(oh.SizeOfImage) != want {
		t.Errorf("SizeOfImage %#x, want %#x", oh.SizeOfImage, want)
	}
	if uint64(oh.SizeOfCode) != code || uint64(oh.SizeOfInitializedData) != initData {
		t.Errorf("SizeOfCode %#x SizeOfInitializedData %#x, want %#x %#x (sums of raw sizes)",
			oh.SizeOfCode, oh.SizeOfInitializedData, code, initData)
	}
	if got := Checksum(img); oh.CheckSum != got {
		t.Errorf("CheckSum %#x, want %#x", oh.CheckSum, got)
	}

	// The payloads, in ukify's order, after the stub's own sections.
	want := []struct {
		name string
		data []byte
	}{
		{".osrel", []byte(in.OSRelease)},
		{".cmdline", []byte(strings.TrimSpace(in.Cmdline))},
		{".uname", []byte(in.Uname)},
		{".initrd", in.Initrd},
		{".linux", in.Kernel},
	}
	tail := f.Sections[len(f.Sections)-len(want):]
	for i, w := range want {
		s := tail[i]
		if s.Name != w.name {
			t.Fatalf("section %d is %s, want %s", len(f.Sections)-len(want)+i, s.Name, w.name)
		}
		if int(s.VirtualSize) != len(w.data) {
			t.Errorf("%s: VirtualSize %d, want %d", s.Name, s.VirtualSize, len(w.data))
		}
		d, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d[:s.VirtualSize], w.data) || len(bytes.Trim(d[s.VirtualSize:], "\x00")) != 0 {
			t.Errorf("%s: payload differs from the input", s.Name)
		}
		if uint64(s.VirtualAddress)%pageSize != 0 {
			t.Errorf("%s: not page-aligned", s.Name)
		}
	}
	if f.FileHeader.PointerToSymbolTable != 0 || f.FileHeader.NumberOfSymbols != 0 {
		t.Errorf("COFF symbol table left in the image")
	}

	// Our own parser agrees with debug/pe.
	own, err := Sections(img)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range own {
		p := f.Sections[i]
		if s.Name != p.Name || s.VirtualAddress != p.VirtualAddress || s.VirtualSize != p.VirtualSize ||
			s.Offset != p.Offset || s.Size != p.Size {
			t.Errorf("Sections()[%d] = %+v, debug/pe says %+v", i, s, p.SectionHeader)
		}
	}
	if s, ok := Find(own, ".linux"); !ok || !bytes.Equal(s.Data, in.Kernel) {
		t.Errorf("Find(.linux) does not return the kernel")
	}
}

func TestBuildRealStub(t *testing.T) {
	in := sampleInput(realStub(t))
	img, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, img, in)
	again, err := Build(in)
	if err != nil || !bytes.Equal(img, again) {
		t.Fatalf("second build differs (err %v)", err)
	}
}

func TestChecksumMatchesLinker(t *testing.T) {
	stub := realStub(t)
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	if want := f.OptionalHeader.(*pe.OptionalHeader64).CheckSum; Checksum(stub) != want {
		t.Fatalf("Checksum(stub) = %#x, the linker wrote %#x", Checksum(stub), want)
	}
}

// objdumpSections runs objdump -h and returns name → (size, vma, file offset).
func objdumpSections(t *testing.T, path string) map[string][3]uint64 {
	t.Helper()
	out, err := exec.Command(needTool(t, "objdump"), "-h", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h rejects %s: %v\n%s", path, err, out)
	}
	if bytes.Contains(out, []byte("warning")) {
		t.Errorf("objdump -h warns:\n%s", out)
	}
	re := regexp.MustCompile(`(?m)^\s+\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)`)
	m := map[string][3]uint64{}
	for _, g := range re.FindAllStringSubmatch(string(out), -1) {
		var v [3]uint64
		for i, s := range g[2:] {
			v[i], _ = strconv.ParseUint(s, 16, 64)
		}
		m[g[1]] = v
	}
	return m
}

func TestObjdumpAccepts(t *testing.T) {
	in := sampleInput(realStub(t))
	img, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "uki.efi")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	secs := objdumpSections(t, path)
	own, _ := Sections(img)
	for _, s := range own {
		got, ok := secs[s.Name]
		if !ok {
			t.Errorf("objdump does not list %s", s.Name)
			continue
		}
		if got != [3]uint64{uint64(s.VirtualSize), uint64(s.VirtualAddress), uint64(s.Offset)} {
			t.Errorf("objdump %s: size/vma/offset %#x, want %#x %#x %#x", s.Name, got, s.VirtualSize, s.VirtualAddress, s.Offset)
		}
	}
}

// TestMatchesObjcopy builds the same UKI the pre-ukify way (objcopy --add-section
// --change-section-vma at the addresses Build chose) and compares what the stub reads: section
// names, addresses, sizes and contents.
func TestMatchesObjcopy(t *testing.T) {
	objcopy := needTool(t, "objcopy")
	in := sampleInput(realStub(t))
	img, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	own, _ := Sections(img)
	dir := t.TempDir()
	args := []string{}
	for _, s := range own[len(own)-5:] {
		p := filepath.Join(dir, strings.TrimPrefix(s.Name, "."))
		if err := os.WriteFile(p, s.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--add-section", s.Name+"="+p,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.Name, s.VirtualAddress))
	}
	out := filepath.Join(dir, "objcopy.efi")
	args = append(args, stubPath, out)
	if b, err := exec.Command(objcopy, args...).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, b)
	}
	ref, _ := os.ReadFile(out)
	theirs, err := Sections(ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(theirs) != len(own) {
		t.Fatalf("objcopy made %d sections, Build %d", len(theirs), len(own))
	}
	for i := range own {
		a, b := own[i], theirs[i]
		if a.Name != b.Name || a.VirtualAddress != b.VirtualAddress || a.VirtualSize != b.VirtualSize ||
			!bytes.Equal(a.Data, b.Data) {
			t.Errorf("section %d: Build %s@%#x+%#x, objcopy %s@%#x+%#x", i, a.Name, a.VirtualAddress,
				a.VirtualSize, b.Name, b.VirtualAddress, b.VirtualSize)
		}
	}
	fo, _ := pe.NewFile(bytes.NewReader(ref))
	fb, _ := pe.NewFile(bytes.NewReader(img))
	if a, b := fb.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage, fo.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage; a != b {
		t.Errorf("SizeOfImage: Build %#x, objcopy %#x", a, b)
	}
}

// minimalPE makes a PE32+ image with one .text section and SizeOfHeaders 0x200, which leaves room
// for three more section headers.
func minimalPE() []byte {
	b := make([]byte, 0x400)
	copy(b, "MZ")
	le.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	coff := 0x44
	le.PutUint16(b[coff:], 0x8664)
	le.PutUint16(b[coff+2:], 1)
	le.PutUint16(b[coff+16:], 240)
	le.PutUint16(b[coff+18:], 0x0206)
	opt := coff + 20
	le.PutUint16(b[opt:], 0x20b)
	le.PutUint32(b[opt+4:], 0x200)
	le.PutUint32(b[opt+16:], 0x1000)
	le.PutUint32(b[opt+32:], 0x1000)
	le.PutUint32(b[opt+36:], 0x200)
	le.PutUint32(b[opt+56:], 0x2000)
	le.PutUint32(b[opt+60:], 0x200)
	le.PutUint16(b[opt+68:], 10)
	le.PutUint32(b[opt+108:], 16)
	sh := opt + 240
	copy(b[sh:], ".text")
	le.PutUint32(b[sh+8:], 0x10)
	le.PutUint32(b[sh+12:], 0x1000)
	le.PutUint32(b[sh+16:], 0x200)
	le.PutUint32(b[sh+20:], 0x200)
	le.PutUint32(b[sh+36:], 0x60000020)
	b[0x200] = 0xc3
	return b
}

func TestMinimalStub(t *testing.T) {
	in := Input{Stub: minimalPE(), Kernel: []byte("kernel"), Initrd: []byte("initrd")}
	img, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Sections(img)
	if len(s) != 3 || s[1].Name != ".initrd" || s[2].Name != ".linux" || string(s[2].Data) != "kernel" {
		t.Fatalf("sections %+v", s)
	}
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage; got != 0x4000 {
		t.Errorf("SizeOfImage %#x, want 0x4000", got)
	}
}

func TestErrors(t *testing.T) {
	stub := minimalPE()
	full := Input{Stub: stub, Kernel: []byte("k"), Initrd: []byte("i"), Cmdline: "c", OSRelease: "o", Uname: "u"}

	signed := bytes.Clone(stub)
	le.PutUint32(signed[0x44+20+112+8*4:], 0x400)
	le.PutUint32(signed[0x44+20+112+8*4+4:], 0x10)

	busy := bytes.Clone(stub)
	busy[0x180] = 1 // something lives after the section table

	withLinux, err := Build(Input{Stub: stub, Kernel: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		in   Input
		want error
		msg  string
	}{
		{"no room", full, ErrNoHeaderRoom, "5 section headers need 200 bytes after offset 0x170, 144 are free"},
		{"space in use", Input{Stub: busy, Kernel: []byte("k")}, ErrNoHeaderRoom, "in use"},
		{"signed", Input{Stub: signed, Kernel: []byte("k")}, ErrSigned, "Authenticode"},
		{"no kernel", Input{Stub: stub}, ErrNoKernel, "no kernel"},
		{"not PE", Input{Stub: []byte("#!/bin/sh\n" + strings.Repeat(" ", 100)), Kernel: []byte("k")}, ErrNotPE, "MZ"},
		{"truncated", Input{Stub: stub[:0x100], Kernel: []byte("k")}, ErrNotPE, "truncated"},
		{"already a UKI", Input{Stub: withLinux, Kernel: []byte("k")}, nil, "already has a .linux section"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(c.in)
			if err == nil {
				t.Fatal("no error")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v is not %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
		})
	}
}

func TestSectionsRejectsTruncated(t *testing.T) {
	img, err := Build(Input{Stub: minimalPE(), Kernel: make([]byte, 5000)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sections(img[:len(img)-600]); !errors.Is(err, ErrNotPE) {
		t.Fatalf("truncated image: %v", err)
	}
}
