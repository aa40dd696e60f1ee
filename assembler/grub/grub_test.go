package grub_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz/lzma"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/grub"
	"github.com/kilnproject/kiln/internal/testenv"
)

// files reads GRUB's i386-pc files from the grub-pc-bin package in the input cache and unpacks
// them into a directory as well (for grub-mkimage).
func files(t *testing.T) (*grub.Files, string) {
	t.Helper()
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		d, _ := os.UserCacheDir()
		cache = filepath.Join(d, "kiln")
	}
	pkg, err := deb.Resolve(filepath.Join(cache, "debs"), "grub-pc-bin")
	if err != nil {
		testenv.Missing(t, "grub-pc-bin not in the input cache (run `make inputs`): %v", err)
	}
	f, err := grub.FromDeb(pkg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range f.List() {
		if err := os.WriteFile(filepath.Join(dir, n), f.File(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f, dir
}

// unpack returns the decompressed payload of a disk core image.
func unpack(t *testing.T, f *grub.Files, core []byte) []byte {
	t.Helper()
	dec := len(f.File("lzma_decompress.img"))
	body := core[512:]
	csize, usize := binary.LittleEndian.Uint32(body[8:]), binary.LittleEndian.Uint32(body[12:])
	hdr := make([]byte, 13)
	hdr[0] = (2*5+0)*9 + 3 // pb=2 lp=0 lc=3
	binary.LittleEndian.PutUint32(hdr[1:], 1<<16)
	binary.LittleEndian.PutUint64(hdr[5:], uint64(usize))
	r, err := lzma.NewReader(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(body[dec:dec+int(csize)])))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress core image: %v", err)
	}
	return out
}

var testCore = grub.Core{Modules: []string{"biosdisk", "part_gpt", "fat", "normal", "linux", "loadenv", "test"},
	Prefix: "(,gpt1)/grub", Config: []byte("set kiln=1\n")}

// The uncompressed core image is byte for byte what GRUB's own grub-mkimage makes from the same
// files, modules, prefix and configuration.
func TestPayloadMatchesGrubMkimage(t *testing.T) {
	f, dir := files(t)
	mkimage := testenv.Tool(t, "grub-mkimage")
	cfg := filepath.Join(t.TempDir(), "embed.cfg")
	os.WriteFile(cfg, testCore.Config, 0o644)
	ref := filepath.Join(t.TempDir(), "core.img")
	args := append([]string{"-O", "i386-pc", "-d", dir, "-p", testCore.Prefix, "-c", cfg, "-o", ref}, testCore.Modules...)
	if out, err := exec.Command(mkimage, args...).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v\n%s", err, out)
	}
	refImg, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	want := unpack(t, f, refImg)
	got, err := f.Payload(testCore)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		n := 0
		for n < min(len(got), len(want)) && got[n] == want[n] {
			n++
		}
		t.Fatalf("payload differs from grub-mkimage's at byte %#x (sizes %d and %d)", n, len(got), len(want))
	}

	core, err := f.DiskCore(testCore, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unpack(t, f, core), want) {
		t.Fatal("the compressed core image does not decompress to the payload")
	}
	if len(core)%512 != 0 {
		t.Fatalf("core image of %d bytes is not whole sectors", len(core))
	}
	// diskboot.img's blocklist: the sectors after the first, loaded at 0x820:0.
	bl := core[500:512]
	if start, n := binary.LittleEndian.Uint64(bl), binary.LittleEndian.Uint16(bl[8:]); start != 2049 || int(n) != len(core)/512-1 {
		t.Fatalf("blocklist start %d length %d, want 2049 and %d", start, n, len(core)/512-1)
	}
	// Outside the size fields, the decompressor and diskboot.img are GRUB's.
	if !bytes.Equal(core[512+0x10:512+len(f.File("lzma_decompress.img"))], refImg[512+0x10:512+len(f.File("lzma_decompress.img"))]) {
		t.Fatal("decompressor differs from grub-mkimage's")
	}
	t.Logf("core image %d bytes (grub-mkimage: %d)", len(core), len(refImg))
}

func TestBootSector(t *testing.T) {
	f, _ := files(t)
	code, err := f.BootSector(40)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 440 || binary.LittleEndian.Uint64(code[0x5c:]) != 40 || code[0x64] != 0xff {
		t.Fatalf("boot sector not patched: % x", code[0x5c:0x68])
	}
}

func TestMissingFiles(t *testing.T) {
	f := grub.New("test", map[string][]byte{"moddep.lst": []byte("normal: boot\n")})
	if _, err := f.Modules([]string{"normal"}); err == nil {
		t.Fatal("a missing module was accepted")
	}
	if _, err := f.Payload(grub.Core{}); err == nil {
		t.Fatal("a missing kernel.img was accepted")
	}
}

// FuzzModules feeds hostile moddep.lst files (they come from a package) to the dependency
// resolver: it returns modules or an error, never hangs or crashes.
func FuzzModules(f *testing.F) {
	f.Add([]byte("normal: boot extcmd\nboot:\nextcmd:\n"), "normal")
	f.Add([]byte("a: b\nb: a\n"), "a")
	f.Add([]byte("no colon here\n"), "x")
	f.Fuzz(func(t *testing.T, moddep []byte, name string) {
		files := map[string][]byte{"moddep.lst": moddep}
		deps := bytes.Fields(moddep)
		for _, d := range deps {
			files[strings.TrimSuffix(string(d), ":")+".mod"] = []byte{1}
		}
		mods, err := grub.New("fuzz", files).Modules([]string{name})
		if err == nil {
			seen := map[string]bool{}
			for _, m := range mods {
				if seen[m] {
					t.Fatalf("module %s listed twice", m)
				}
				seen[m] = true
			}
		}
	})
}
