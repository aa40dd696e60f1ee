package assembler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/assembler/initramfs"
)

// The kernel cache keeps what a build takes from a kernel package — the kernel image and the
// module closure — under <cache>/kernels/<key>/, keyed by the package's sha256 and the requested
// modules. A later build of any recipe with the same kernel and modules skips decompressing the
// package (about 400 MiB of xz) entirely. Every file is checked against its recorded sha256 on
// load; a damaged or partial entry is ignored and rewritten.

const kernelCacheVersion = 1

type kernelCacheIndex struct {
	Version int                `json:"version"`
	Release string             `json:"release"`
	Image   string             `json:"image"` // sha256 of the kernel image
	Load    []string           `json:"load"`
	Dep     string             `json:"dep"`
	Modules []kernelCacheEntry `json:"modules"`
}

type kernelCacheEntry struct {
	Path   string `json:"path"` // relative to /lib/modules/<release>/
	SHA256 string `json:"sha256"`
	Origin string `json:"origin"`
}

func kernelCacheDir(cache, debSHA string, modules []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "kiln-kernel-cache %d\n%s\n%s\n", kernelCacheVersion, debSHA, strings.Join(modules, "\n"))
	return filepath.Join(cache, "kernels", hex.EncodeToString(h.Sum(nil))[:32])
}

// loadKernelCache returns the cached kernel parts, or ok=false.
func loadKernelCache(dir string) (kp kernelParts, ok bool) {
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return kp, false
	}
	var ix kernelCacheIndex
	if json.Unmarshal(data, &ix) != nil || ix.Version != kernelCacheVersion {
		return kp, false
	}
	blob := func(sum string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, sum))
		return b, err == nil && sha256Hex(b) == sum
	}
	if kp.image, ok = blob(ix.Image); !ok {
		return kp, false
	}
	dep, ok := blob(ix.Dep)
	if !ok {
		return kp, false
	}
	kp.release, kp.load, kp.dep = ix.Release, ix.Load, dep
	for _, m := range ix.Modules {
		b, ok := blob(m.SHA256)
		if !ok {
			return kernelParts{}, false
		}
		kp.modules = append(kp.modules, initramfs.File{Path: m.Path, Mode: 0o644, Data: b, Origin: m.Origin})
	}
	return kp, true
}

// saveKernelCache stores kernel parts; it writes a temporary directory and renames it into place,
// so readers never see a partial entry.
func saveKernelCache(dir string, kp kernelParts) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	put := func(b []byte) (string, error) {
		sum := sha256Hex(b)
		return sum, os.WriteFile(filepath.Join(tmp, sum), b, 0o644)
	}
	ix := kernelCacheIndex{Version: kernelCacheVersion, Release: kp.release, Load: kp.load}
	if ix.Image, err = put(kp.image); err != nil {
		return err
	}
	if ix.Dep, err = put(kp.dep); err != nil {
		return err
	}
	for _, m := range kp.modules {
		sum, err := put(m.Data)
		if err != nil {
			return err
		}
		ix.Modules = append(ix.Modules, kernelCacheEntry{Path: m.Path, SHA256: sum, Origin: m.Origin})
	}
	data, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), data, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir) // a damaged entry
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}
