package deb

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CacheDir returns the directory that holds input packages: $KILN_CACHE/debs, with KILN_CACHE
// defaulting to "kiln" under the user cache directory (~/.cache/kiln on Linux).
func CacheDir() string {
	c := os.Getenv("KILN_CACHE")
	if c == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		c = filepath.Join(base, "kiln")
	}
	return filepath.Join(c, "debs")
}

// Resolve finds a package: nameOrPath is either a path to a .deb (it ends in ".deb" or holds a
// path separator) or a package name looked up as <name>_*.deb in dir (a directory of .deb files,
// usually CacheDir()), where the highest version wins. A metapackage (one that ships no files
// beyond documentation, such as linux-image-amd64) is followed through its Depends to the first
// dependency found in dir (or next to the given path); the result's Via names the metapackage.
func Resolve(dir, nameOrPath string) (*Package, error) {
	if strings.HasSuffix(nameOrPath, ".deb") || strings.ContainsAny(nameOrPath, `/\`) {
		p, err := Open(nameOrPath)
		if err != nil {
			return nil, err
		}
		if dir == "" {
			dir = filepath.Dir(nameOrPath)
		}
		return followMetas(DirFinder(dir), p, nameOrPath)
	}
	return ResolveWith(DirFinder(dir), nameOrPath)
}

// Finder opens the highest version of the package rel names that satisfies rel, or fails with an
// error wrapping ErrPackageMissing.
type Finder func(rel Relation) (*Package, error)

// DirFinder finds packages in a directory of <name>_<version>_<arch>.deb files.
func DirFinder(dir string) Finder {
	return func(rel Relation) (*Package, error) { return find(dir, rel.Name, rel) }
}

// ResolveWith finds the package name through find and follows metapackages like Resolve.
func ResolveWith(find Finder, name string) (*Package, error) {
	p, err := find(Relation{Name: name})
	if err != nil {
		return nil, err
	}
	return followMetas(find, p, name)
}

func followMetas(find Finder, p *Package, ref string) (*Package, error) {
	for range 4 { // metapackage chains are short; a bound guards against cycles
		meta, err := isMeta(p)
		if err != nil || !meta {
			return p, err
		}
		next, err := followMeta(find, p)
		if err != nil {
			return nil, err
		}
		next.Via = p.Name + " " + p.Version
		p = next
	}
	return nil, fmt.Errorf("resolve %s: metapackage chain too long", ref)
}

// find opens the highest version of name in dir that satisfies rel.
func find(dir, name string, rel Relation) (*Package, error) {
	matches, err := filepath.Glob(filepath.Join(dir, globEscape(name)+"_*.deb"))
	if err != nil {
		return nil, fmt.Errorf("find package %s in %s: %w", name, dir, err)
	}
	type cand struct {
		path, version string
	}
	var cands []cand
	for _, m := range matches {
		base := strings.TrimSuffix(filepath.Base(m), ".deb")
		parts := strings.Split(base, "_") // name_version_arch
		if len(parts) < 2 || parts[0] != name {
			continue
		}
		v, err := url.PathUnescape(parts[1]) // apt-get download writes ':' as %3a
		if err != nil {
			v = parts[1]
		}
		if rel.Op != "" && !Satisfies(v, rel.Op, rel.Version) {
			continue
		}
		cands = append(cands, cand{m, v})
	}
	if len(cands) == 0 {
		want := name
		if rel.Op != "" {
			want = rel.String()
		}
		return nil, fmt.Errorf("find package %s in %s: %w; run `make inputs` or `apt-get download %s` into that directory, or give a path to a .deb",
			want, dir, ErrPackageMissing, name)
	}
	sort.Slice(cands, func(i, j int) bool { return CompareVersions(cands[i].version, cands[j].version) > 0 })
	return Open(cands[0].path)
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// isMeta reports whether the package ships nothing but directories and documentation.
func isMeta(p *Package) (bool, error) {
	if len(p.Depends) == 0 {
		return false, nil
	}
	meta := true
	err := p.Walk(func(h *tar.Header, _ io.Reader) error {
		if h.Typeflag == tar.TypeDir || strings.HasPrefix(h.Name, "usr/share/doc/") ||
			strings.HasPrefix(h.Name, "usr/share/lintian/") || strings.HasPrefix(h.Name, "usr/share/bug/") {
			return nil
		}
		meta = false
		return fs.SkipAll
	})
	return meta, err
}

func followMeta(find Finder, p *Package) (*Package, error) {
	var tried []string
	var missing error
	for _, clause := range p.Depends {
		for _, rel := range clause {
			next, err := find(rel)
			if err == nil {
				return next, nil
			}
			if !errors.Is(err, ErrPackageMissing) {
				return nil, err
			}
			tried = append(tried, rel.String())
			missing = err
		}
	}
	return nil, fmt.Errorf("resolve metapackage %s %s: none of its dependencies (%s) is available: %w",
		p.Name, p.Version, strings.Join(tried, ", "), missing)
}
