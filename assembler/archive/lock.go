package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
)

// LockVersion is the kiln.lock format version this package writes and reads.
const LockVersion = 1

// Lock is the content of kiln.lock: the exact package set a build installs, whatever the
// archive holds later. It is JSON (see docs/archive.md).
type Lock struct {
	Version int    `json:"version"`
	Arch    string `json:"arch"`
	// Requests are the package requests the set was resolved for (a recipe's system.packages),
	// Inputs the packages a build reads (kernel, busybox, boot loader); a build refuses a lock
	// whose lists differ from its recipe's.
	Requests []string        `json:"requests,omitempty"`
	Inputs   []string        `json:"inputs,omitempty"`
	Packages []LockedPackage `json:"packages"`
}

// LockedPackage is one package of a lock.
type LockedPackage struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Arch      string `json:"arch"`
	Suite     string `json:"suite"`
	Component string `json:"component"`
	Filename  string `json:"filename"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Mirror    string `json:"mirror,omitempty"` // the mirror it was resolved from
	// Input: only read by the build (a kernel, the boot loader), not installed into the image.
	Input bool `json:"input,omitempty"`
}

// maxLock bounds a kiln.lock read (a full desktop is a few thousand packages, ~1 MB).
const maxLock = 16 << 20

// NewLock records a resolved set.
func NewLock(arch string, pkgs []*Package) *Lock {
	l := &Lock{Version: LockVersion, Arch: arch}
	for _, p := range pkgs {
		l.Packages = append(l.Packages, LockedPackage{Name: p.Name, Version: p.Version, Arch: p.Arch,
			Suite: p.Origin.Suite, Component: p.Origin.Component, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256,
			Mirror: p.Origin.URI})
	}
	return l
}

// Marshal returns the lock as indented JSON with a trailing newline.
func (l *Lock) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadLock parses and validates a kiln.lock.
func ReadLock(r io.Reader) (*Lock, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLock+1))
	if err != nil {
		return nil, fmt.Errorf("kiln.lock: %w", err)
	}
	if len(data) > maxLock {
		return nil, fmt.Errorf("kiln.lock: over %d bytes: %w", maxLock, ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Lock
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("kiln.lock: %w (regenerate it with kiln packages resolve --lock)", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("kiln.lock: data after the JSON object")
	}
	if l.Version != LockVersion {
		return nil, fmt.Errorf("kiln.lock: format version %d, this Kiln reads %d", l.Version, LockVersion)
	}
	if !validArch(l.Arch) {
		return nil, fmt.Errorf("kiln.lock: bad arch %.40q", l.Arch)
	}
	seen := map[string]bool{}
	for i, p := range l.Packages {
		where := fmt.Sprintf("kiln.lock: package %d (%.60s)", i+1, p.Name)
		switch {
		case !validName(p.Name):
			return nil, fmt.Errorf("%s: bad name", where)
		case deb.CheckVersion(p.Version) != nil:
			return nil, fmt.Errorf("%s: %w", where, deb.CheckVersion(p.Version))
		case !validArch(p.Arch):
			return nil, fmt.Errorf("%s: bad arch", where)
		case p.Suite == "" || !validArch(toArchChars(p.Suite)) || p.Component == "" || !validArch(toArchChars(p.Component)):
			return nil, fmt.Errorf("%s: bad suite or component", where)
		case checkFilename(p.Filename) != nil:
			return nil, fmt.Errorf("%s: %w", where, checkFilename(p.Filename))
		case p.Size < 0:
			return nil, fmt.Errorf("%s: negative size", where)
		case !isSHA256(p.SHA256):
			return nil, fmt.Errorf("%s: bad sha256", where)
		case p.Mirror != "" && checkMirror(p.Mirror) != nil:
			return nil, fmt.Errorf("%s: %w", where, checkMirror(p.Mirror))
		case seen[p.Name+":"+p.Arch]:
			return nil, fmt.Errorf("%s: listed twice", where)
		}
		seen[p.Name+":"+p.Arch] = true
	}
	for i, req := range l.Requests {
		if _, err := ParseRelations(req); err != nil {
			return nil, fmt.Errorf("kiln.lock: request %d: %w", i+1, err)
		}
	}
	for i, in := range l.Inputs {
		if !validName(in) {
			return nil, fmt.Errorf("kiln.lock: input %d: bad package name %.60q", i+1, in)
		}
	}
	return &l, nil
}

// checkMirror accepts an http or https URL without query or fragment.
func checkMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("bad mirror URL %.80q", m)
	}
	return nil
}

// toArchChars maps the characters suite and component names use beyond architecture names
// ('.', '_', '/') to '-' for validation.
func toArchChars(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' || c == '_' || c == '/' {
			b[i] = '-'
		}
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ReadLockFile reads a kiln.lock from disk.
func ReadLockFile(file string) (*Lock, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := ReadLock(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return l, nil
}

// Items returns the fetch list of the locked set: each package from every source serving its
// suite (else from the mirror it was resolved from), checked against the locked size and SHA-256, so the set installed is exactly the
// locked one whatever the archive's indices say now.
func (l *Lock) Items(sources []Source) ([]Item, error) {
	out := make([]Item, 0, len(l.Packages))
	for _, p := range l.Packages {
		it := Item{Name: p.Name + " " + p.Version, Size: p.Size, SHA256: p.SHA256}
		for _, s := range sources {
			if s.Suite == p.Suite {
				it.URLs = append(it.URLs, s.URI+"/"+p.Filename)
			}
		}
		if len(it.URLs) == 0 && p.Mirror != "" {
			it.URLs = append(it.URLs, strings.TrimRight(p.Mirror, "/")+"/"+p.Filename)
		}
		if len(it.URLs) == 0 {
			return nil, fmt.Errorf("kiln.lock: %s is from %s: %w", it.Name, p.Suite, errNoSource)
		}
		out = append(out, it)
	}
	return out, nil
}
