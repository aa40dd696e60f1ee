package kmod

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kilnproject/kiln/assembler/deb"

	"github.com/kilnproject/kiln/internal/testenv"
)

// makeKO builds a minimal ELF64 relocatable object with a .modinfo section, like a kernel module.
func makeKO(info ...string) []byte {
	modinfo := []byte(strings.Join(info, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := ehsize
	strOff := modOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(1))     // ET_REL
	binary.Write(&b, le, uint16(62))    // EM_X86_64
	binary.Write(&b, le, uint32(1))     // version
	binary.Write(&b, le, uint64(0))     // entry
	binary.Write(&b, le, uint64(0))     // phoff
	binary.Write(&b, le, uint64(shOff)) // shoff
	binary.Write(&b, le, uint32(0))     // flags
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0)) // phentsize
	binary.Write(&b, le, uint16(0)) // phnum
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(name, typ uint32, flags, off, size uint64) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, flags)
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, off)
		binary.Write(&b, le, size)
		binary.Write(&b, le, uint32(0)) // link
		binary.Write(&b, le, uint32(0)) // info
		binary.Write(&b, le, uint64(1)) // align
		binary.Write(&b, le, uint64(0)) // entsize
	}
	sh(0, 0, 0, 0, 0)
	sh(1, 1, 2, uint64(modOff), uint64(len(modinfo))) // .modinfo PROGBITS ALLOC
	sh(10, 3, 0, uint64(strOff), uint64(len(shstr)))  // .shstrtab STRTAB
	return b.Bytes()
}

// testTree writes a small module tree: lib/modules/6.0-test/.
func testTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.0-test")
	files := map[string][]byte{
		"kernel/fs/fat/fat.ko":                  makeKO("license=GPL", "depends=", "name=fat"),
		"kernel/fs/fat/vfat.ko":                 makeKO("alias=fs-vfat", "depends=fat", "name=vfat"),
		"kernel/drivers/virtio/virtio.ko":       makeKO("depends=virtio_ring", "name=virtio"),
		"kernel/drivers/virtio/virtio_ring.ko":  makeKO("depends=", "name=virtio_ring"),
		"kernel/drivers/block/virtio_blk.ko":    makeKO("depends=virtio,virtio_ring,crc-builtin", "alias=virtio:d00000002v*", "name=virtio_blk"),
		"kernel/drivers/usb/usb-common.ko":      makeKO("depends=", "name=usb_common"),
		"kernel/drivers/usb/usbcore.ko.xz":      xzData(t, makeKO("depends=usb-common", "name=usbcore")),
		"kernel/drivers/usb/usb-storage.ko.zst": zstData(t, makeKO("depends=usbcore", "softdep=pre: crc32c post: nothing", "name=usb_storage")),
		"kernel/crypto/crc32c_generic.ko":       makeKO("alias=crypto-crc32c", "alias=crc32c", "name=crc32c_generic"),
		"kernel/drivers/broken.ko":              makeKO("depends=not_there", "name=broken"),
		"kernel/lib/a.ko":                       makeKO("depends=b", "name=a"),
		"kernel/lib/b.ko":                       makeKO("depends=a", "name=b"),
		"kernel/lib/soft.ko":                    makeKO("softdep=pre: absent_module", "name=soft"),
		"modules.builtin":                       []byte("kernel/lib/crc-builtin.ko\nkernel/fs/ext4/ext4.ko\n"),
		"modules.order":                         []byte("kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio.ko\nkernel/drivers/block/virtio_blk.ko\nkernel/fs/fat/fat.ko\nkernel/fs/fat/vfat.ko\n"),
	}
	for p, b := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func xzData(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zstData(t *testing.T, b []byte) []byte {
	w, _ := zstd.NewWriter(nil)
	return w.EncodeAll(b, nil)
}

func names(ms []*Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func TestClosure(t *testing.T) {
	dir := testTree(t)
	ix, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Release != "6.0-test" || len(ix.Modules) != 13 || !ix.IsBuiltin("crc-builtin") || !ix.IsBuiltin("ext4") {
		t.Fatalf("index: release %q, %d modules, builtin %v", ix.Release, len(ix.Modules), ix.Builtin)
	}
	for _, tc := range []struct {
		name    string
		want    []string
		modules []string
		load    []string
		builtin []string
		err     string
	}{
		{"dependencies first", []string{"vfat", "virtio_blk"}, []string{"fat", "vfat", "virtio_ring", "virtio", "virtio_blk"},
			[]string{"vfat", "virtio_blk"}, nil, ""},
		{"dash and underscore", []string{"virtio-blk", "usb_common"}, []string{"virtio_ring", "virtio", "virtio_blk", "usb_common"},
			[]string{"virtio_blk", "usb_common"}, nil, ""},
		{"compressed and softdep pre", []string{"usb-storage"}, []string{"crc32c_generic", "usb_common", "usbcore", "usb_storage"},
			[]string{"usb_storage"}, nil, ""},
		{"alias", []string{"fs-vfat"}, []string{"fat", "vfat"}, []string{"vfat"}, nil, ""},
		{"builtin is satisfied", []string{"ext4", "fat"}, []string{"fat"}, []string{"fat"}, []string{"ext4"}, ""},
		{"absent softdep is ignored", []string{"soft"}, []string{"soft"}, []string{"soft"}, nil, ""},
		{"cycle terminates", []string{"a"}, []string{"b", "a"}, []string{"a"}, nil, ""},
		{"duplicates once", []string{"vfat", "vfat", "fat"}, []string{"fat", "vfat"}, []string{"vfat", "fat"}, nil, ""},
		{"unknown module", []string{"virtio_bk", "vfat", "usbcor"}, nil, nil, nil,
			`unknown kernel module in kernel 6.0-test: "virtio_bk" (did you mean "virtio_blk" or "virtio"?), "usbcor" (did you mean "usbcore"?); check kernel.modules`},
		{"unknown without suggestion", []string{"zzzzzzzz"}, nil, nil, nil, `unknown kernel module in kernel 6.0-test: "zzzzzzzz"; check`},
		{"missing dependency", []string{"broken"}, nil, nil, nil,
			"kernel 6.0-test: modules depend on modules the kernel package lacks: not_there (needed by broken)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ix.Closure(tc.want)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.HasPrefix(tc.name, "unknown") && !errors.Is(err, ErrUnknownModule) {
					t.Errorf("error does not wrap ErrUnknownModule")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(s.Modules); !reflect.DeepEqual(got, tc.modules) {
				t.Errorf("modules %v, want %v", got, tc.modules)
			}
			if !reflect.DeepEqual(s.Load, tc.load) || !reflect.DeepEqual(s.Builtin, tc.builtin) {
				t.Errorf("load %v builtin %v, want %v %v", s.Load, s.Builtin, tc.load, tc.builtin)
			}
		})
	}
}

func TestMetadataFiles(t *testing.T) {
	dir := testTree(t)
	ix, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ix.Closure([]string{"vfat", "virtio_blk", "usb_storage"})
	if err != nil {
		t.Fatal(err)
	}
	wantDep := `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fat/fat.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/crypto/crc32c_generic.ko:
kernel/drivers/usb/usb-common.ko:
kernel/drivers/usb/usb-storage.ko.zst: kernel/drivers/usb/usbcore.ko.xz kernel/drivers/usb/usb-common.ko kernel/crypto/crc32c_generic.ko
kernel/drivers/usb/usbcore.ko.xz: kernel/drivers/usb/usb-common.ko
`
	if got := string(s.ModulesDep()); got != wantDep {
		t.Errorf("modules.dep:\n%s\nwant\n%s", got, wantDep)
	}
	if got := string(s.ModulesAlias()); !strings.Contains(got, "alias fs-vfat vfat\n") || !strings.Contains(got, "alias crypto-crc32c crc32c_generic\n") {
		t.Errorf("modules.alias:\n%s", got)
	}
	if got := string(s.ModulesBuiltin()); got != "kernel/lib/crc-builtin.ko\nkernel/fs/ext4/ext4.ko\n" {
		t.Errorf("modules.builtin:\n%s", got)
	}
	if err := s.ReadData(dir); err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Modules {
		if len(m.Data) == 0 {
			t.Errorf("%s has no data", m.Name)
		}
	}
}

func TestParseModInfoErrors(t *testing.T) {
	if _, err := ParseModInfo([]byte("not elf")); err == nil || !strings.Contains(err.Error(), "not an ELF module") {
		t.Errorf("not ELF: %v", err)
	}
	if _, err := ParseModInfo(xzData(t, []byte("junk"))); err == nil {
		t.Error("compressed junk accepted")
	}
}

func realKernel(t *testing.T) *deb.Package {
	t.Helper()
	dir := deb.CacheDir()
	if m, _ := filepath.Glob(filepath.Join(dir, "linux-image-amd64_*.deb")); len(m) == 0 {
		testenv.Missing(t, "no linux-image-amd64 in %s: run `make inputs`", dir)
	}
	p, err := deb.Resolve(dir, "linux-image-amd64")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var defaultModules = []string{"virtio_blk", "virtio_pci", "virtio_net", "virtio_scsi", "sd_mod", "usb_storage", "uas",
	"xhci_pci", "ehci_pci", "vfat", "nls_cp437", "nls_iso8859_1", "efivarfs"}

// TestRealKernel reads the Debian kernel twice (indexing, then from the cached index), checks that
// both give the same result, and compares the dependencies with depmod's and busybox modprobe's.
func TestRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the 400 MB kernel package")
	}
	pkg := realKernel(t)
	cache := t.TempDir()
	ctx := context.Background()
	k1, err := ReadPackage(ctx, pkg, defaultModules, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "kmod", "*.json")); len(m) != 1 {
		t.Fatalf("index not cached: %v", m)
	}
	k2, err := ReadPackage(ctx, pkg, defaultModules, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.Image, k2.Image) || len(k1.Image) < 1<<20 || k1.ImagePath != "boot/vmlinuz-"+k1.Release {
		t.Errorf("kernel image differs or is missing: %s %d/%d bytes", k1.ImagePath, len(k1.Image), len(k2.Image))
	}
	if !bytes.Equal(k1.Set.ModulesDep(), k2.Set.ModulesDep()) || !reflect.DeepEqual(names(k1.Set.Modules), names(k2.Set.Modules)) {
		t.Errorf("cached index gives another closure")
	}
	for i, m := range k1.Set.Modules {
		if !bytes.Equal(m.Data, k2.Set.Modules[i].Data) || len(m.Data) == 0 {
			t.Errorf("%s: data differs or is empty", m.Name)
		}
	}
	if !reflect.DeepEqual(k1.Set.Load, defaultModules) && len(k1.Set.Load)+len(k1.Set.Builtin) != len(defaultModules) {
		t.Errorf("load %v builtin %v", k1.Set.Load, k1.Set.Builtin)
	}
	_, err = ReadPackage(ctx, pkg, []string{"virtio_bk"}, Options{CacheDir: cache})
	if !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), `"virtio_bk" (did you mean "virtio_blk"`) {
		t.Errorf("unknown module: %v", err)
	}

	// Lay the closure out as a module tree and let depmod compute modules.dep.
	root := t.TempDir()
	modDir := filepath.Join(root, "lib", "modules", k1.Release)
	for _, m := range k1.Set.Modules {
		p := filepath.Join(modDir, m.Path)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, m.Data, 0o644))
	}
	for name, b := range k1.Set.Files() {
		must(t, os.WriteFile(filepath.Join(modDir, name), b, 0o644))
	}
	if depmod, err := exec.LookPath("depmod"); err == nil {
		cp := t.TempDir()
		must(t, exec.Command("cp", "-a", root+"/.", cp).Run())
		out, err := exec.Command(depmod, "-b", cp, k1.Release).CombinedOutput()
		if err != nil {
			t.Fatalf("depmod: %v\n%s", err, out)
		}
		ref, err := os.ReadFile(filepath.Join(cp, "lib", "modules", k1.Release, "modules.dep"))
		must(t, err)
		// Ours lists depmod's dependencies plus the softdep pre modules (and their dependencies),
		// which busybox modprobe would otherwise not load.
		soft := map[string]bool{}
		for _, m := range k1.Set.Modules {
			for _, d := range m.SoftPre {
				if sm := k1.Index.lookup(d); sm != nil {
					soft[sm.Path] = true
					for _, x := range k1.Set.deps(sm) {
						soft[x.Path] = true
					}
				}
			}
		}
		got, want := depSets(k1.Set.ModulesDep()), depSets(ref)
		if len(got) != len(want) {
			t.Errorf("modules.dep has %d modules, depmod's %d", len(got), len(want))
		}
		for mod, w := range want {
			g := map[string]bool{}
			for _, d := range strings.Fields(got[mod]) {
				g[d] = true
			}
			for _, d := range strings.Fields(w) {
				if !g[d] {
					t.Errorf("%s: depmod lists %s, we do not", mod, d)
				}
				delete(g, d)
			}
			for d := range g {
				if !soft[d] {
					t.Errorf("%s: we list %s, depmod does not, and it is no softdep", mod, d)
				}
			}
		}
	} else if os.Getenv("CI") == "true" {
		t.Error("depmod (package kmod) is not installed")
	}

	// busybox modprobe, as the image runs it, must resolve the dependencies from our files.
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the busybox modprobe check (needs chroot)")
		return
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Missing(t, "busybox not installed")
	}
	uname, err := exec.Command("uname", "-r").Output()
	must(t, err)
	must(t, os.Rename(modDir, filepath.Join(root, "lib", "modules", strings.TrimSpace(string(uname)))))
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, exec.Command("cp", bb, filepath.Join(root, "bin", "busybox")).Run())
	out, err := exec.Command("chroot", root, "/bin/busybox", "modprobe", "-D", "uas").CombinedOutput()
	if err != nil {
		t.Fatalf("busybox modprobe -D uas: %v\n%s", err, out)
	}
	var loaded []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		loaded = append(loaded, Name(f[len(f)-1]))
	}
	want := []string{"usb_common", "usbcore", "scsi_common", "scsi_mod", "usb_storage", "uas"}
	if !sameSet(loaded, want) || loaded[len(loaded)-1] != "uas" || indexOf(loaded, "usbcore") > indexOf(loaded, "usb_storage") {
		t.Errorf("busybox modprobe -D uas loads %v, want %v in dependency order", loaded, want)
	}
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

func sameSet(a, b []string) bool {
	x, y := append([]string{}, a...), append([]string{}, b...)
	sort.Strings(x)
	sort.Strings(y)
	return reflect.DeepEqual(x, y)
}

// depSets parses modules.dep into module → sorted dependency list.
func depSets(b []byte) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, ":")
		d := strings.Fields(v)
		sort.Strings(d)
		out[k] = strings.Join(d, " ")
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = fmt.Sprint

// BenchmarkReadPackage reads the kernel image and the default recipe's module closure from the
// Debian kernel package, without (cold) and with (cached) an index; bench/deb.sh compares it with
// dpkg-deb -x plus depmod.
func BenchmarkReadPackage(b *testing.B) {
	dir := deb.CacheDir()
	if m, _ := filepath.Glob(filepath.Join(dir, "linux-image-amd64_*.deb")); len(m) == 0 {
		b.Skip("no linux-image-amd64 in " + dir)
	}
	pkg, err := deb.Resolve(dir, "linux-image-amd64")
	if err != nil {
		b.Fatal(err)
	}
	for _, cached := range []bool{false, true} {
		name := "cold"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			cache := b.TempDir()
			if cached {
				if _, err := ReadPackage(context.Background(), pkg, defaultModules, Options{CacheDir: cache}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				c := cache
				if !cached {
					c = ""
				}
				if _, err := ReadPackage(context.Background(), pkg, defaultModules, Options{CacheDir: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
