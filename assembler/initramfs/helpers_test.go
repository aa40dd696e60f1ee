package initramfs

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kilnproject/kiln/assembler/deb"

	"github.com/kilnproject/kiln/internal/testenv"
)

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Missing(t, format, args...)
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

func cacheDir() string {
	if d := os.Getenv("KILN_CACHE"); d != "" {
		return filepath.Join(d, "debs")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kiln", "debs")
}

// openDeb opens the newest package in the input cache whose file name matches pattern.
func openDeb(t *testing.T, pattern string) *deb.Package {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(cacheDir(), pattern))
	if len(m) == 0 {
		skipOrFail(t, "no %s in %s (make inputs)", pattern, cacheDir())
	}
	sort.Strings(m)
	p, err := deb.Open(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	bbOnce sync.Once
	bbFile File
	bbErr  error
)

func busybox(t *testing.T) File {
	t.Helper()
	p := openDeb(t, "busybox-static_*.deb")
	bbOnce.Do(func() { bbFile, bbErr = BusyboxFromDeb(p) })
	if bbErr != nil {
		t.Fatal(bbErr)
	}
	return bbFile
}

func busyboxBinary(t *testing.T) []byte { return busybox(t).Data }

func writeTemp(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// kernelInputs are the kernel and the module closure of the default recipe, read from the
// linux-image package in the cache.
type kernelInputs struct {
	vmlinuz []byte
	modules Modules
}

var (
	kOnce sync.Once
	kIn   kernelInputs
	kErr  error
)

var defaultModules = []string{"virtio_blk", "virtio_pci", "virtio_net", "virtio_scsi", "sd_mod",
	"usb_storage", "uas", "xhci_pci", "ehci_pci", "vfat", "nls_cp437", "nls_iso8859_1", "efivarfs"}

func kernel(t *testing.T) kernelInputs {
	t.Helper()
	p := openDeb(t, "linux-image-[0-9]*-amd64_*.deb")
	kOnce.Do(func() { kIn, kErr = readKernel(p, defaultModules) })
	if kErr != nil {
		t.Fatal(kErr)
	}
	return kIn
}

// readKernel takes the vmlinuz and the closure of want from a linux-image package: one pass
// collects every module's dependencies and the data of the modules needed so far is kept for a
// second, cheap selection.
func readKernel(p *deb.Package, want []string) (kernelInputs, error) {
	var k kernelInputs
	type mod struct {
		path string
		deps []string
		data []byte
	}
	mods := map[string]*mod{}
	err := p.Walk(func(h *tar.Header, r io.Reader) error {
		switch {
		case strings.HasPrefix(h.Name, "boot/vmlinuz-"):
			b, err := io.ReadAll(r)
			k.vmlinuz = b
			return err
		case strings.HasPrefix(h.Name, "lib/modules/") && strings.HasSuffix(h.Name, ".ko"):
			parts := strings.SplitN(h.Name, "/", 4)
			k.modules.Release = parts[2]
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			d, err := modinfoDepends(b)
			if err != nil {
				return err
			}
			mods[moduleName(h.Name)] = &mod{path: parts[3], deps: d, data: b}
		}
		return nil
	})
	if err != nil {
		return k, err
	}
	need := map[string]bool{}
	var add func(string)
	add = func(n string) {
		m, ok := mods[n]
		if !ok || need[n] {
			return // built in
		}
		need[n] = true
		for _, d := range m.deps {
			add(strings.ReplaceAll(d, "-", "_"))
		}
	}
	for _, n := range want {
		add(n)
		if mods[n] != nil {
			k.modules.Load = append(k.modules.Load, n)
		}
	}
	names := make([]string, 0, len(need))
	for n := range need {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		k.modules.Files = append(k.modules.Files, File{Path: mods[n].path, Data: mods[n].data, Origin: p.Name + " " + p.Version})
	}
	return k, nil
}

func sortStrings(s []string) { sort.Strings(s) }
