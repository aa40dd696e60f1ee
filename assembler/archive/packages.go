package archive

import (
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
)

// Origin is where a package index came from.
type Origin struct {
	URI       string // mirror base URL
	Suite     string // e.g. "bookworm" or "bookworm-security"
	Component string // e.g. "main"
	Priority  int    // apt's pin priority: 500, 100 for NotAutomatic+ButAutomaticUpgrades, 1 for NotAutomatic
}

// Package is one binary package stanza of a Packages index, with what resolving and fetching
// need.
type Package struct {
	Name, Version, Arch string
	MultiArch           string // "", "same", "foreign" or "allowed"
	Essential           bool
	Priority            string
	Depends, PreDepends []Relation
	Conflicts, Breaks   []Relation
	Provides            []Dep // each with Op "=" and a version when versioned, OpAny otherwise
	Filename            string
	Size                int64
	SHA256              string
	Origin              *Origin
	Description         string // the short description (the field's first line)
	InstalledSize       int64  // Installed-Size in bytes (the field is in KiB)
}

// ID is the package's "name:arch=version".
func (p *Package) ID() string { return p.Name + ":" + p.Arch + "=" + p.Version }

// ParsePackages reads a Packages index and calls fn with each package. Every stanza must carry
// a valid name, version, architecture, a relative Filename inside the archive, Size and SHA256;
// relation fields must parse. Errors name the stanza.
func ParsePackages(r io.Reader, lim Limits, fn func(*Package) error) error {
	return ParseDeb822(r, lim, func(para Paragraph) error {
		p, err := packageFrom(para)
		if err != nil {
			name, _ := para.Get("Package")
			return fmt.Errorf("package %.60q: %w", name, err)
		}
		return fn(p)
	})
}

func packageFrom(para Paragraph) (*Package, error) {
	p := &Package{}
	var err error
	for _, f := range para {
		v := f.Value
		switch fieldKey(f.Name) {
		case "package":
			p.Name = v
		case "version":
			p.Version = v
		case "architecture":
			p.Arch = v
		case "multi-arch":
			p.MultiArch = v
		case "essential":
			p.Essential = v == "yes"
		case "priority":
			p.Priority = v
		case "depends":
			p.Depends, err = ParseRelations(v)
		case "pre-depends":
			p.PreDepends, err = ParseRelations(v)
		case "conflicts":
			p.Conflicts, err = ParseRelations(v)
		case "breaks":
			p.Breaks, err = ParseRelations(v)
		case "provides":
			p.Provides, err = parseProvides(v)
		case "filename":
			p.Filename = v
		case "size":
			p.Size, err = strconv.ParseInt(v, 10, 64)
			if err == nil && p.Size < 0 {
				err = fmt.Errorf("negative Size")
			}
		case "sha256":
			p.SHA256 = v
		case "description":
			d, _, _ := strings.Cut(v, "\n")
			if len(d) > 200 {
				d = strings.TrimSpace(strings.ToValidUTF8(d[:200], ""))
			}
			p.Description = strings.Clone(d) // not the long description behind it
		case "installed-size":
			var kib int64
			kib, err = strconv.ParseInt(v, 10, 64)
			if err == nil && (kib < 0 || kib > 1<<40) {
				err = fmt.Errorf("Installed-Size out of range")
			}
			p.InstalledSize = kib << 10
		}
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	if !validName(p.Name) {
		return nil, fmt.Errorf("bad or missing Package")
	}
	if err := deb.CheckVersion(p.Version); err != nil {
		return nil, err
	}
	if !validArch(p.Arch) {
		return nil, fmt.Errorf("bad or missing Architecture")
	}
	switch p.MultiArch {
	case "", "no", "same", "foreign", "allowed":
	default:
		return nil, fmt.Errorf("bad Multi-Arch %.20q", p.MultiArch)
	}
	if p.MultiArch == "no" {
		p.MultiArch = ""
	}
	if err := checkFilename(p.Filename); err != nil {
		return nil, err
	}
	if strings.ContainsFunc(p.Priority, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("bad Priority %.20q", p.Priority)
	}
	if !isSHA256(p.SHA256) {
		return nil, fmt.Errorf("bad or missing SHA256")
	}
	return p, nil
}

// knownFields maps the fields packageFrom reads, in Debian's spelling and lower case, to one
// spelling, so the common case needs no allocation.
var knownFields = map[string]string{}

func init() {
	for _, f := range []string{"Package", "Version", "Architecture", "Multi-Arch", "Essential", "Priority", "Depends",
		"Pre-Depends", "Conflicts", "Breaks", "Provides", "Filename", "Size", "SHA256", "Description", "Installed-Size"} {
		knownFields[f] = strings.ToLower(f)
		knownFields[strings.ToLower(f)] = strings.ToLower(f)
	}
}

// fieldKey returns the lower-case name of a field packageFrom reads, "" for others, without
// allocating (field names are case-insensitive).
func fieldKey(name string) string {
	if k, ok := knownFields[name]; ok {
		return k
	}
	var buf [32]byte
	if len(name) > len(buf) {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return knownFields[string(buf[:len(name)])]
}

// parseProvides reads a Provides field: names with optional "(= version)".
func parseProvides(v string) ([]Dep, error) {
	rels, err := ParseRelations(v)
	if err != nil {
		return nil, err
	}
	out := make([]Dep, 0, len(rels))
	for _, r := range rels {
		if len(r) != 1 || (r[0].Op != OpAny && r[0].Op != OpEQ) || r[0].ArchQ != "" {
			return nil, fmt.Errorf("provides %q: only \"name\" or \"name (= version)\" allowed", r)
		}
		out = append(out, r[0])
	}
	return out, nil
}

// checkFilename accepts a clean relative path inside the archive (pool/main/...), so a URL built
// from it stays under the mirror.
func checkFilename(f string) error {
	if f == "" || len(f) > 1024 || strings.HasPrefix(f, "/") || path.Clean(f) != f ||
		f == ".." || strings.HasPrefix(f, "../") || strings.ContainsAny(f, "\\?#%") ||
		strings.ContainsFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("bad or missing Filename %.60q", f)
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
