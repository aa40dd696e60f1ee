// Package deb reads Debian binary packages (.deb) in pure Go: the ar archive, the control file
// (Package, Version, Architecture, Depends) and the data tarball, streamed entry by entry.
//
// Compressions: control.tar and data.tar may be xz, zstd, gzip, bzip2 (data only) or uncompressed.
// xz is decoded by the system's xz tool when it is installed (multi-threaded, fastest) and otherwise
// in Go, decoding the blocks of multi-block streams (as dpkg-deb writes them) on all CPUs.
//
// Resolve finds a package by name in an input cache directory, choosing the highest version, and
// follows metapackages such as linux-image-amd64 to the package that holds the files.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Sentinel errors, wrapped by the errors Open and Walk return.
var (
	ErrNotDeb = errors.New("not a Debian package")
	// ErrTruncated: the package ends early or its compressed data is damaged (a decoder cannot
	// always tell the two apart); downloading it again is the cure for both.
	ErrTruncated      = errors.New("truncated package")
	ErrCompression    = errors.New("unsupported or mislabelled compression")
	ErrMissingMember  = errors.New("missing package member")
	ErrPackageMissing = errors.New("package not found")
)

// Package is an opened .deb. It keeps no file open: Walk opens the file each time, so a Package may
// be walked several times and from several goroutines.
type Package struct {
	Path    string
	Name    string // Package:
	Version string // Version: (Debian version, with epoch if any)
	Arch    string // Architecture: ("amd64", "all")
	// Depends lists the Depends: clauses; each clause is a list of alternatives ("a | b").
	Depends [][]Relation
	// Control holds every field of the control file, keyed by field name.
	Control map[string]string
	// Via names the metapackage Resolve followed to reach this package ("" if none).
	Via string

	size    int64
	data    member // data.tar.*
	control member // control.tar.*

	hashOnce sync.Once
	sha      string
	shaErr   error
}

// Relation is one package relation: "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
type Relation struct {
	Name    string
	Op      string // "", "=", ">=", "<=", ">>", "<<"
	Version string
	Arch    string // ":any" qualifier, if present
}

func (r Relation) String() string {
	s := r.Name
	if r.Arch != "" {
		s += ":" + r.Arch
	}
	if r.Op != "" {
		s += " (" + r.Op + " " + r.Version + ")"
	}
	return s
}

type member struct {
	name        string
	off, size   int64
	compression string // "xz", "zst", "gz", "bz2", ""
}

// String names the package as "name version (path)".
func (p *Package) String() string { return fmt.Sprintf("%s %s (%s)", p.Name, p.Version, p.Path) }

// Size is the .deb file's size in bytes.
func (p *Package) Size() int64 { return p.size }

// DataCompression names the data tarball's compression ("xz", "zst", "gz", "bz2" or "").
func (p *Package) DataCompression() string { return p.data.compression }

// SHA256 returns the hex sha256 of the .deb file, computed once.
func (p *Package) SHA256() (string, error) {
	p.hashOnce.Do(func() {
		f, err := os.Open(p.Path)
		if err != nil {
			p.shaErr = fmt.Errorf("hash %s: %w", p.Path, err)
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			p.shaErr = fmt.Errorf("hash %s: %w", p.Path, err)
			return
		}
		p.sha = hex.EncodeToString(h.Sum(nil))
	})
	return p.sha, p.shaErr
}

const arMagic = "!<arch>\n"

// maxMembers bounds the ar index read from a package: a .deb has three members, some tools add a
// signature or two.
const maxMembers = 64

// Open reads the package's ar index and control file.
func Open(path string) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open package %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open package %s: %w", path, err)
	}
	p := &Package{Path: path, size: fi.Size()}
	members, err := readAr(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("open package %s: %w", path, err)
	}
	if len(members) == 0 || members[0].name != "debian-binary" {
		first := "nothing"
		if len(members) > 0 {
			first = strconv.Quote(members[0].name)
		}
		return nil, fmt.Errorf("open package %s: %w: the first member is %s, want debian-binary", path, ErrNotDeb, first)
	}
	vb := make([]byte, min(members[0].size, 16))
	if _, err := f.ReadAt(vb, members[0].off); err != nil {
		return nil, fmt.Errorf("open package %s: read debian-binary: %w", path, err)
	}
	if !bytes.HasPrefix(vb, []byte("2.")) {
		return nil, fmt.Errorf("open package %s: %w: format %q (Kiln reads format 2.x)", path, ErrNotDeb, strings.TrimSpace(string(vb)))
	}
	for _, m := range members[1:] {
		base, comp, ok := splitMember(m.name)
		if !ok {
			continue
		}
		m.compression = comp
		switch {
		case base == "control.tar" && p.control.name == "":
			p.control = m
		case base == "data.tar" && p.data.name == "":
			p.data = m
		}
	}
	for _, m := range []struct {
		mem  *member
		name string
	}{{&p.control, "control.tar"}, {&p.data, "data.tar"}} {
		if m.mem.name == "" {
			return nil, fmt.Errorf("open package %s: %w: no %s.{xz,zst,gz} member (members: %s)", path, ErrMissingMember, m.name, names(members))
		}
	}
	if p.control.compression == "bz2" {
		return nil, fmt.Errorf("open package %s: %w: control.tar.bz2 is not a valid member name", path, ErrCompression)
	}
	ctl, err := p.readControl(f)
	if err != nil {
		return nil, fmt.Errorf("open package %s: %w", path, err)
	}
	p.Control = ctl
	p.Name, p.Version, p.Arch = ctl["Package"], ctl["Version"], ctl["Architecture"]
	if p.Name == "" || p.Version == "" {
		return nil, fmt.Errorf("open package %s: %w: control file has no Package or Version field", path, ErrNotDeb)
	}
	p.Depends = ParseRelations(ctl["Pre-Depends"] + "," + ctl["Depends"])
	return p, nil
}

func names(ms []member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name)
	}
	return strings.Join(s, ", ")
}

// splitMember splits "data.tar.xz" into ("data.tar", "xz").
func splitMember(name string) (base, comp string, ok bool) {
	for _, base := range []string{"control.tar", "data.tar"} {
		if name == base {
			return base, "", true
		}
		if c, found := strings.CutPrefix(name, base+"."); found {
			switch c {
			case "xz", "zst", "gz", "bz2":
				return base, c, true
			}
			return base, c, true // unknown compression: reported when read
		}
	}
	return "", "", false
}

// readAr lists the members of an ar archive without reading their data.
func readAr(f io.ReaderAt, size int64) ([]member, error) {
	magic := make([]byte, len(arMagic))
	if n, _ := f.ReadAt(magic, 0); n < len(arMagic) || string(magic) != arMagic {
		return nil, fmt.Errorf("%w: no ar archive header", ErrNotDeb)
	}
	var members []member
	off := int64(len(arMagic))
	hdr := make([]byte, 60)
	for off < size {
		if size-off == 1 { // padding byte after an odd-sized last member
			break
		}
		if n, _ := f.ReadAt(hdr, off); n < len(hdr) {
			return nil, fmt.Errorf("%w: ar header at byte %d is cut off; download the package again", ErrTruncated, off)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("%w: bad ar header at byte %d", ErrNotDeb, off)
		}
		name := strings.TrimRight(string(hdr[0:16]), " ")
		name = strings.TrimSuffix(name, "/") // GNU ar terminates names with '/'
		msize, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || msize < 0 {
			return nil, fmt.Errorf("%w: bad size in ar header of %q", ErrNotDeb, name)
		}
		off += 60
		if off+msize > size {
			return nil, fmt.Errorf("%w: member %s needs %d bytes but only %d remain; download the package again",
				ErrTruncated, name, msize, size-off)
		}
		if len(members) == maxMembers {
			return nil, fmt.Errorf("%w: more than %d ar members (a .deb has three)", ErrNotDeb, maxMembers)
		}
		members = append(members, member{name: name, off: off, size: msize})
		off += msize + msize%2
	}
	return members, nil
}

// readControl reads ./control from control.tar.
func (p *Package) readControl(f *os.File) (map[string]string, error) {
	var ctl map[string]string
	err := p.walkMember(f, p.control, func(h *tar.Header, r io.Reader) error {
		if h.Name != "control" {
			return nil
		}
		b, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return err
		}
		ctl = ParseControl(b)
		return fs.SkipAll
	})
	if err != nil {
		return nil, err
	}
	if ctl == nil {
		return nil, fmt.Errorf("%w: %s has no control file", ErrMissingMember, p.control.name)
	}
	return ctl, nil
}

// ParseControl parses a Debian control paragraph ("Field: value" with continuation lines).
func ParseControl(b []byte) map[string]string {
	out := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break // end of the first paragraph
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			out[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = strings.TrimSpace(k)
		out[last] = strings.TrimSpace(v)
	}
	return out
}

// ParseRelations parses a relation field such as "libc6 (>= 2.34), a | b".
func ParseRelations(s string) [][]Relation {
	var out [][]Relation
	for _, clause := range strings.Split(s, ",") {
		var alts []Relation
		for _, a := range strings.Split(clause, "|") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			var r Relation
			name := a
			if i := strings.IndexByte(a, '('); i >= 0 {
				name = strings.TrimSpace(a[:i])
				cond := strings.TrimSuffix(strings.TrimSpace(a[i+1:]), ")")
				for _, op := range []string{">=", "<=", ">>", "<<", "=", ">", "<"} {
					if v, ok := strings.CutPrefix(cond, op); ok {
						r.Op, r.Version = op, strings.TrimSpace(v)
						break
					}
				}
			}
			if i := strings.IndexAny(name, " [<"); i >= 0 { // drop [arch] and <profile> qualifiers
				name = name[:i]
			}
			name, r.Arch, _ = strings.Cut(name, ":")
			r.Name = name
			alts = append(alts, r)
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// Walk streams the data tarball, calling fn for each entry in archive order with the entry's
// contents (valid until fn returns). Names are cleaned and relative: "./boot/vmlinuz-6.1" becomes
// "boot/vmlinuz-6.1" (hard-link targets likewise); the root entry "./" is skipped. If fn returns
// fs.SkipAll, Walk stops and returns nil; any other error stops Walk and is returned.
func (p *Package) Walk(fn func(hdr *tar.Header, r io.Reader) error) error {
	f, err := os.Open(p.Path)
	if err != nil {
		return fmt.Errorf("read package %s: %w", p.Path, err)
	}
	defer f.Close()
	if err := p.walkMember(f, p.data, fn); err != nil {
		return fmt.Errorf("read package %s: %w", p.Path, err)
	}
	return nil
}

// WalkControl streams the control tarball (control, md5sums, conffiles, maintainer scripts) like
// Walk.
func (p *Package) WalkControl(fn func(hdr *tar.Header, r io.Reader) error) error {
	f, err := os.Open(p.Path)
	if err != nil {
		return fmt.Errorf("read package %s: %w", p.Path, err)
	}
	defer f.Close()
	if err := p.walkMember(f, p.control, fn); err != nil {
		return fmt.Errorf("read package %s: %w", p.Path, err)
	}
	return nil
}

// ReadFile returns the contents of one regular file of the data tarball, stopping the stream as
// soon as it is found.
func (p *Package) ReadFile(name string) ([]byte, error) {
	name = cleanName(name)
	var data []byte
	found := false
	err := p.Walk(func(h *tar.Header, r io.Reader) error {
		if h.Name != name {
			return nil
		}
		found = true
		var err error
		data, err = io.ReadAll(r)
		if err != nil {
			return err
		}
		return fs.SkipAll
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("read %s from package %s: %w", name, p.Path, fs.ErrNotExist)
	}
	return data, nil
}

func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

func (p *Package) walkMember(f *os.File, m member, fn func(*tar.Header, io.Reader) error) error {
	sec := io.NewSectionReader(f, m.off, m.size)
	r, closeFn, err := decompress(sec, m)
	if err != nil {
		return err
	}
	defer closeFn()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return closeFn()
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: %s ends early: %v; download the package again", ErrTruncated, m.name, err)
			}
			return fmt.Errorf("%s: %w", m.name, err)
		}
		h.Name = cleanName(h.Name)
		if h.Name == "" {
			continue
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = cleanName(h.Linkname)
		}
		if err := fn(h, tr); err != nil {
			if errors.Is(err, fs.SkipAll) {
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: %s ends inside %s; download the package again", ErrTruncated, m.name, h.Name)
			}
			return err
		}
	}
}
