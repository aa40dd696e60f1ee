package archive

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Source is one apt source: a mirror, a suite and its components, the architectures to use (the
// caller's when empty) and the keyring its InRelease must be signed with (a file, or an inline
// armored key from a deb822 Signed-By).
type Source struct {
	URI        string
	Suite      string
	Components []string
	Arches     []string
	SignedBy   string // keyring file path, or armored key text
}

// DefaultKeyring is where Debian installs its archive keyring, used by sources that name none.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// HostSources reads the apt sources of the system rooted at root ("/" for the host):
// etc/apt/sources.list and etc/apt/sources.list.d/*.list (one-line format) and *.sources
// (deb822). deb-src entries and disabled ones are left out; a source without Signed-By gets the
// root's Debian archive keyring.
func HostSources(root string) ([]Source, error) {
	dir := filepath.Join(root, "etc/apt")
	files := []string{filepath.Join(dir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*"))
	sort.Strings(more)
	files = append(files, more...)
	var out []Source
	for _, f := range files {
		var parse func([]byte, string) ([]Source, error)
		switch {
		case strings.HasSuffix(f, ".list"):
			parse = ParseSourcesList
		case strings.HasSuffix(f, ".sources"):
			parse = ParseDeb822Sources
		default:
			continue
		}
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("apt sources: %w", err)
		}
		srcs, err := parse(data, f)
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	for i := range out {
		if out[i].SignedBy == "" {
			out[i].SignedBy = filepath.Join(root, DefaultKeyring)
		} else if !isInlineKey(out[i].SignedBy) && root != "/" && filepath.IsAbs(out[i].SignedBy) {
			out[i].SignedBy = filepath.Join(root, out[i].SignedBy)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no apt sources in %s: name the mirror and suite explicitly", dir)
	}
	return out, nil
}

func isInlineKey(s string) bool { return strings.Contains(s, "-----BEGIN PGP PUBLIC KEY BLOCK-----") }

// ParseSourcesList parses apt's one-line format: "deb [opt=value ...] URI suite [component ...]".
func ParseSourcesList(data []byte, file string) ([]Source, error) {
	var out []Source
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "deb-src" {
			continue
		}
		if f[0] != "deb" {
			return nil, fmt.Errorf("%s:%d: expected deb or deb-src, got %.20q", file, n+1, f[0])
		}
		f = f[1:]
		var s Source
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			var opts []string
			for len(f) > 0 {
				opts = append(opts, f[0])
				done := strings.HasSuffix(f[0], "]")
				f = f[1:]
				if done {
					break
				}
			}
			for _, o := range strings.Fields(strings.Trim(strings.Join(opts, " "), "[]")) {
				k, v, _ := strings.Cut(o, "=")
				switch k {
				case "arch":
					s.Arches = strings.Split(v, ",")
				case "signed-by":
					s.SignedBy = v
				}
			}
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: expected a URI and a suite", file, n+1)
		}
		s.URI, s.Suite, s.Components = strings.TrimRight(f[0], "/"), f[1], f[2:]
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseDeb822Sources parses apt's deb822 format (*.sources): Types, URIs, Suites, Components,
// Architectures, Signed-By (a file or an inline key), Enabled.
func ParseDeb822Sources(data []byte, file string) ([]Source, error) {
	var out []Source
	err := ParseDeb822(bytes.NewReader(data), Limits{Field: 1 << 20, Paragraph: 4 << 20, Total: 16 << 20}, func(p Paragraph) error {
		get := func(k string) string { v, _ := p.Get(k); return v }
		if strings.EqualFold(get("Enabled"), "no") || !slices.Contains(strings.Fields(get("Types")), "deb") {
			return nil
		}
		signed := get("Signed-By")
		if !isInlineKey(signed) {
			signed = strings.TrimSpace(signed)
			if f := strings.Fields(signed); len(f) > 0 {
				signed = f[0] // several keyrings or fingerprints: the first file
			}
		} else {
			// An inline key's blank lines are written as "." in deb822.
			lines := strings.Split(signed, "\n")
			for i, l := range lines {
				if l == "." {
					lines[i] = ""
				}
			}
			signed = strings.Join(lines, "\n")
		}
		for _, uri := range strings.Fields(get("URIs")) {
			for _, suite := range strings.Fields(get("Suites")) {
				s := Source{URI: strings.TrimRight(uri, "/"), Suite: suite, Components: strings.Fields(get("Components")),
					Arches: strings.Fields(get("Architectures")), SignedBy: signed}
				if err := s.check(); err != nil {
					return err
				}
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func (s Source) check() error {
	if !strings.HasPrefix(s.URI, "http://") && !strings.HasPrefix(s.URI, "https://") {
		return fmt.Errorf("source %q: only http and https mirrors are supported", s.URI)
	}
	if s.Suite == "" || strings.ContainsAny(s.Suite, "/ ") || len(s.Components) == 0 {
		return fmt.Errorf("source %q: a suite name and at least one component are needed (flat repositories are not supported)", s.URI)
	}
	return nil
}

// keyring loads the source's keyring.
func (s Source) keyring() (keys []byte, name string, err error) {
	if isInlineKey(s.SignedBy) {
		return []byte(s.SignedBy), "inline Signed-By of " + s.URI, nil
	}
	b, err := os.ReadFile(s.SignedBy)
	if err != nil {
		return nil, "", fmt.Errorf("archive keyring for %s %s: %w", s.URI, s.Suite, err)
	}
	return b, s.SignedBy, nil
}

// ForSuite keeps the sources of suite and its companion suites ("bookworm" also keeps
// "bookworm-updates", "bookworm-security" and "bookworm-backports", which apt pins low through
// its Release). An empty suite keeps all.
func ForSuite(srcs []Source, suite string) []Source {
	if suite == "" {
		return srcs
	}
	var out []Source
	for _, s := range srcs {
		if s.Suite == suite || strings.HasPrefix(s.Suite, suite+"-") {
			out = append(out, s)
		}
	}
	return out
}
