package kmod

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
)

// Kernel is what an image takes from a linux-image package.
type Kernel struct {
	Release   string // "6.1.0-56-amd64"
	ImagePath string // path of the kernel image in the package ("boot/vmlinuz-6.1.0-56-amd64")
	Image     []byte // the kernel image (bzImage)
	// Set is the module closure; every module's Data is filled.
	Set *Set
	// Index describes all modules of the kernel.
	Index *Index
}

// Options tune ReadPackage.
type Options struct {
	// CacheDir keeps module indexes between builds ("" = no cache): <CacheDir>/kmod/<pkg>.json.
	CacheDir string
	// Progress receives events of phase "kernel" (Done/Total: bytes of the package's data read).
	Progress progress.Func
}

const indexVersion = 1

type cachedIndex struct {
	Version   int    `json:"version"`
	Package   string `json:"package"`
	PkgVer    string `json:"package_version"`
	Size      int64  `json:"size"`
	ImagePath string `json:"image_path"`
	Index     *Index `json:"index"`
}

// ReadPackage reads the kernel image and the closure of the modules named in want from a
// linux-image package. With a cached index of the package's modules it makes one pass over the
// package's data, stopping as soon as it has everything; without one it indexes the package while
// keeping the modules already known to be needed, and makes a second, shorter pass only for
// dependencies that came earlier in the archive than their users. The index is then cached.
func ReadPackage(ctx context.Context, pkg *deb.Package, want []string, opts Options) (*Kernel, error) {
	k, err := readPackage(ctx, pkg, want, opts)
	if err != nil {
		return nil, fmt.Errorf("read kernel %s %s: %w", pkg.Name, pkg.Version, err)
	}
	return k, nil
}

func readPackage(ctx context.Context, pkg *deb.Package, want []string, opts Options) (*Kernel, error) {
	if c := loadCache(pkg, opts.CacheDir); c != nil {
		set, err := c.Index.Closure(want)
		if err != nil {
			return nil, err
		}
		k := &Kernel{Release: c.Index.Release, ImagePath: c.ImagePath, Index: c.Index, Set: set}
		if err := fetch(ctx, pkg, k, true, opts.Progress); err != nil {
			return nil, err
		}
		if k.Image != nil && complete(set) {
			return k, nil
		}
		// The cache does not match the package: index it again.
	}
	k, err := scan(ctx, pkg, want, opts.Progress)
	if err != nil {
		return nil, err
	}
	if !complete(k.Set) {
		if err := fetch(ctx, pkg, k, false, opts.Progress); err != nil {
			return nil, err
		}
		if !complete(k.Set) {
			return nil, errors.New("module files vanished between two reads of the package")
		}
	}
	saveCache(pkg, opts.CacheDir, k)
	return k, nil
}

func complete(s *Set) bool {
	for _, m := range s.Modules {
		if m.Data == nil {
			return false
		}
	}
	return true
}

// modulePath splits "lib/modules/<release>/<rest>" (also under usr/).
func modulePath(name string) (release, rest string, ok bool) {
	name = strings.TrimPrefix(name, "usr/")
	r, ok := strings.CutPrefix(name, "lib/modules/")
	if !ok {
		return "", "", false
	}
	release, rest, ok = strings.Cut(r, "/")
	return release, rest, ok && rest != ""
}

func isKernelImage(name string) bool {
	return strings.HasPrefix(name, "boot/vmlinuz-") || strings.HasPrefix(name, "boot/vmlinux-")
}

type counter struct {
	n    int64
	prog progress.Func
	tot  int64
}

func (c *counter) add(n int64) {
	c.n += n
	c.prog.Report(progress.Event{Phase: "kernel", Done: c.n, Total: c.tot})
}

// scan indexes the whole package in one pass, keeping the data of the modules that the request
// needs as far as is known when each module goes by.
func scan(ctx context.Context, pkg *deb.Package, want []string, prog progress.Func) (*Kernel, error) {
	k := &Kernel{}
	var ix *Index
	needed := map[string]bool{}
	for _, w := range want {
		needed[Name(w)] = true
	}
	kept := map[string][]byte{}
	c := &counter{prog: prog}
	var buf bytes.Buffer
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if isKernelImage(h.Name) {
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			k.Image, k.ImagePath = data, h.Name
			c.add(int64(len(data)))
			return nil
		}
		release, rest, ok := modulePath(h.Name)
		if !ok {
			return nil
		}
		if ix == nil {
			ix = NewIndex(release)
		} else if release != ix.Release {
			return fmt.Errorf("package holds modules of two kernels, %s and %s", ix.Release, release)
		}
		switch {
		case rest == "modules.builtin" || rest == "modules.order":
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			if rest == "modules.builtin" {
				ix.SetBuiltin(b)
			} else {
				ix.SetOrder(b)
			}
		case isModuleFile(rest):
			buf.Reset()
			if _, err := buf.ReadFrom(r); err != nil {
				return err
			}
			c.add(int64(buf.Len()))
			m, err := ix.Add(rest, buf.Bytes())
			if err != nil {
				return err
			}
			if needed[m.Name] || matchesAlias(m, needed) {
				kept[m.Name] = bytes.Clone(buf.Bytes())
				for _, d := range append(append([]string{}, m.Depends...), m.SoftPre...) {
					needed[d] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if k.Image == nil {
		return nil, errors.New("no boot/vmlinuz-* in the package: is it a linux-image package?")
	}
	if ix == nil {
		return nil, errors.New("no lib/modules/ in the package: is it a linux-image package?")
	}
	set, err := ix.Closure(want)
	if err != nil {
		return nil, err
	}
	for _, m := range set.Modules {
		m.Data = kept[m.Name]
	}
	k.Release, k.Index, k.Set = ix.Release, ix, set
	return k, nil
}

func matchesAlias(m *Module, needed map[string]bool) bool {
	for _, a := range m.Aliases {
		if needed[Name(a)] {
			return true
		}
	}
	return false
}

// fetch reads the kernel image (if image) and the set's modules that have no data yet, stopping
// after the last one.
func fetch(ctx context.Context, pkg *deb.Package, k *Kernel, image bool, prog progress.Func) error {
	missing := map[string]*Module{}
	for _, m := range k.Set.Modules {
		if m.Data == nil {
			missing[m.Path] = m
		}
	}
	c := &counter{prog: prog}
	needImage := image && k.ImagePath != ""
	if len(missing) == 0 && !needImage {
		return nil
	}
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if needImage && h.Name == k.ImagePath {
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			k.Image, needImage = data, false
			c.add(int64(len(data)))
		} else if release, rest, ok := modulePath(h.Name); ok && release == k.Release {
			if m := missing[rest]; m != nil {
				data, err := io.ReadAll(r)
				if err != nil {
					return err
				}
				m.Data = data
				delete(missing, rest)
				c.add(int64(len(data)))
			}
		}
		if len(missing) == 0 && !needImage {
			return fs.SkipAll
		}
		return nil
	})
	return err
}

func cachePath(pkg *deb.Package, dir string) string {
	v := strings.NewReplacer(":", "%3a", "/", "_").Replace(pkg.Version)
	return filepath.Join(dir, "kmod", fmt.Sprintf("%s_%s_%d.json", pkg.Name, v, pkg.Size()))
}

func loadCache(pkg *deb.Package, dir string) *cachedIndex {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(cachePath(pkg, dir))
	if err != nil {
		return nil
	}
	var c cachedIndex
	if json.Unmarshal(b, &c) != nil || c.Version != indexVersion || c.Package != pkg.Name ||
		c.PkgVer != pkg.Version || c.Size != pkg.Size() || c.Index == nil || c.Index.Modules == nil {
		return nil
	}
	return &c
}

// saveCache writes the index atomically; failing to cache is not an error.
func saveCache(pkg *deb.Package, dir string, k *Kernel) {
	if dir == "" {
		return
	}
	p := cachePath(pkg, dir)
	b, err := json.Marshal(cachedIndex{Version: indexVersion, Package: pkg.Name, PkgVer: pkg.Version, Size: pkg.Size(),
		ImagePath: k.ImagePath, Index: k.Index})
	if err != nil || os.MkdirAll(filepath.Dir(p), 0o755) != nil {
		return
	}
	atomicfile.Write(p, b, 0o644) // a cache: a failed write only costs the next build time
}

// ScanDir indexes a module tree on disk: dir is lib/modules/<release> (the release is its base
// name). modules.builtin and modules.order are read when present.
func ScanDir(dir string) (*Index, error) {
	ix := NewIndex(filepath.Base(dir))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type().IsRegular() && isModuleFile(rel):
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = ix.Add(rel, b)
			return err
		case rel == "modules.builtin" || rel == "modules.order":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if rel == "modules.builtin" {
				ix.SetBuiltin(b)
			} else {
				ix.SetOrder(b)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules in %s: %w", dir, err)
	}
	return ix, nil
}

// ReadData fills the Data of the set's modules from the module tree dir that ScanDir indexed.
func (s *Set) ReadData(dir string) error {
	for _, m := range s.Modules {
		if m.Data != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path.Clean(m.Path))))
		if err != nil {
			return fmt.Errorf("read module %s: %w", m.Name, err)
		}
		m.Data = b
	}
	return nil
}
