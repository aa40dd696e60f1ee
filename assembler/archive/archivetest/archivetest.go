// Package archivetest makes small Debian archives for tests: Packages indices for a few
// packages, an InRelease signed with a key of its own, fake .debs, all served over HTTP on
// 127.0.0.1. Suite "stable", component "main", architectures amd64 and i386.
package archivetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"
)

// Pkg describes one package: name, version, architecture (amd64 unless an "Architecture" field
// says otherwise) and further control fields.
type Pkg struct {
	Name, Version, Arch string
	Fields              map[string]string
	Data                []byte // the .deb served; nil: a fake one (see Deb)
}

// P returns a package with the given fields as name/value pairs.
func P(name, version string, kv ...string) Pkg {
	s := Pkg{Name: name, Version: version, Arch: "amd64", Fields: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "Architecture" {
			s.Arch = kv[i+1]
			continue
		}
		s.Fields[kv[i]] = kv[i+1]
	}
	return s
}

// Deb is the content of the package's .deb: Data, else fake content.
func (s Pkg) Deb() []byte {
	if s.Data != nil {
		return s.Data
	}
	return bytes.Repeat([]byte(s.Name+"_"+s.Version+"\n"), 200)
}

// Filename is the package's path in the pool.
func (s Pkg) Filename() string {
	return fmt.Sprintf("pool/main/%s/%s/%s_%s_%s.deb", s.Name[:1], s.Name, s.Name, strings.ReplaceAll(s.Version, ":", "_"), s.Arch)
}

// PackagesText is the Packages index of pkgs.
func PackagesText(pkgs []Pkg) []byte {
	var b bytes.Buffer
	for _, s := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", s.Name, s.Version, s.Arch)
		keys := make([]string, 0, len(s.Fields))
		for k := range s.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %s\n", k, s.Fields[k])
		}
		deb := s.Deb()
		sum := sha256.Sum256(deb)
		fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %x\nDescription: test package %s\n second line\n\n", s.Filename(), len(deb), sum, s.Name)
	}
	return b.Bytes()
}

var (
	keyOnce sync.Once
	key     *openpgp.Entity
	keyErr  error
)

// SigningKey is the archive key, made once per test binary. Ed25519 signs fast, which fuzzing
// InRelease needs.
func SigningKey(t testing.TB) *openpgp.Entity {
	t.Helper()
	keyOnce.Do(func() {
		key, keyErr = openpgp.NewEntity("Kiln test archive", "", "test@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return key
}

// ArmoredPublic is e's public key, ASCII-armored.
func ArmoredPublic(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

// Archive is a served test archive. Change what it serves with Publish, SetFile and SetTamper.
type Archive struct {
	URL      string // mirror base URL, ".../debian"
	Keyring  string // file holding the archive's armored public key
	ByHash   bool   // release sets Acquire-By-Hash (default true)
	AllIndex bool   // "all" listed in Architectures, arch-all packages in binary-all only

	t        testing.TB
	srv      *httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	tamper   func(path string, b []byte) []byte
	requests []string
}

// New publishes pkgs (with extra Release fields) and serves them until the test ends.
func New(t testing.TB, pkgs []Pkg, release map[string]string) *Archive {
	t.Helper()
	a := &Archive{t: t, files: map[string][]byte{}, ByHash: true}
	a.Keyring = filepath.Join(t.TempDir(), "archive-key.asc")
	if err := os.WriteFile(a.Keyring, ArmoredPublic(t, SigningKey(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	a.URL = a.srv.URL + "/debian"
	a.Publish(pkgs, release)
	return a
}

// Publish adds pkgs' .debs to the pool and replaces the indices and InRelease with theirs.
func (a *Archive) Publish(pkgs []Pkg, release map[string]string) {
	t := a.t
	for _, s := range pkgs {
		a.SetFile(s.Filename(), s.Deb())
	}
	arches := []string{"amd64", "i386"}
	if a.AllIndex {
		arches = append(arches, "all")
	}
	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Test\nSuite: stable\nCodename: stable\nDate: %s\nArchitectures: %s\nComponents: main\n",
		time.Now().UTC().Add(-time.Hour).Format(time.RFC1123), strings.Join(arches, " "))
	if a.ByHash {
		rel.WriteString("Acquire-By-Hash: yes\n")
	}
	keys := make([]string, 0, len(release))
	for k := range release {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&rel, "%s: %s\n", k, release[k])
	}
	rel.WriteString("SHA256:\n")
	for _, arch := range arches {
		var these []Pkg
		for _, s := range pkgs {
			if s.Arch == arch || s.Arch == "all" && (!a.AllIndex || arch == "all") {
				these = append(these, s)
			}
		}
		plain := PackagesText(these)
		dir := "main/binary-" + arch + "/"
		for _, f := range []struct {
			path string
			data []byte
		}{{dir + "Packages", plain}, {dir + "Packages.xz", compress(t, plain)}} {
			sum := sha256.Sum256(f.data)
			fmt.Fprintf(&rel, " %x %d %s\n", sum, len(f.data), f.path)
			a.SetFile("dists/stable/"+f.path, f.data)
			a.SetFile("dists/stable/"+dir+"by-hash/SHA256/"+hex.EncodeToString(sum[:]), f.data)
		}
	}
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, SigningKey(t).PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rel.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.SetFile("dists/stable/InRelease", signed.Bytes())
}

func compress(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// SetFile serves b at path (relative to the mirror base).
func (a *Archive) SetFile(path string, b []byte) {
	a.mu.Lock()
	a.files[path] = b
	a.mu.Unlock()
}

// File returns what is served at path.
func (a *Archive) File(path string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.files[path]
}

// SetTamper makes the server pass every file through f before sending it.
func (a *Archive) SetTamper(f func(path string, b []byte) []byte) {
	a.mu.Lock()
	a.tamper = f
	a.mu.Unlock()
}

// Seen returns the paths requested so far, plus "path range" for each range request.
func (a *Archive) Seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...)
}

// Close stops the server (a mirror gone offline).
func (a *Archive) Close() { a.srv.Close() }

func (a *Archive) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/debian/")
	a.mu.Lock()
	a.requests = append(a.requests, p)
	if rg := r.Header.Get("Range"); rg != "" {
		a.requests = append(a.requests, p+" "+rg)
	}
	b, ok := a.files[p]
	tamper := a.tamper
	a.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if tamper != nil {
		b = tamper(p, b)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// File is one entry of a real test package's data.tar: a regular file (Data), a directory (a
// Path ending in "/") or a symlink (Link).
type File struct {
	Path string // relative, "usr/bin/hello"
	Mode int64  // 0: 0644 for files, 0755 for directories
	Data string
	Link string
}

// WithDeb makes s a real Debian package (Data) holding files, with a control file from its
// fields, an md5sums member, and further control members (name → content, e.g. "postinst").
func (s Pkg) WithDeb(t testing.TB, files []File, control map[string]string) Pkg {
	t.Helper()
	var ctl bytes.Buffer
	fmt.Fprintf(&ctl, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Kiln tests <test@example.invalid>\n", s.Name, s.Version, s.Arch)
	keys := make([]string, 0, len(s.Fields))
	for k := range s.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&ctl, "%s: %s\n", k, s.Fields[k])
	}
	fmt.Fprintf(&ctl, "Description: test package %s\n second line\n", s.Name)
	var sums bytes.Buffer
	var data []tarEntry
	for _, f := range files {
		e := tarEntry{name: "./" + f.Path, mode: f.Mode, data: f.Data, link: f.Link}
		switch {
		case strings.HasSuffix(f.Path, "/"):
			e.typ = tar.TypeDir
			if e.mode == 0 {
				e.mode = 0o755
			}
		case f.Link != "":
			e.typ, e.mode = tar.TypeSymlink, 0o777
		default:
			e.typ = tar.TypeReg
			if e.mode == 0 {
				e.mode = 0o644
			}
			fmt.Fprintf(&sums, "%x  %s\n", md5.Sum([]byte(f.Data)), f.Path)
		}
		data = append(data, e)
	}
	members := []tarEntry{{name: "./control", mode: 0o644, data: ctl.String()}, {name: "./md5sums", mode: 0o644, data: sums.String()}}
	names := make([]string, 0, len(control))
	for k := range control {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		members = append(members, tarEntry{name: "./" + k, mode: 0o755, data: control[k]})
	}
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", tarGz(t, members)}, {"data.tar.gz", tarGz(t, data)}} {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		ar.Write(m.data)
		if len(m.data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	s.Data = ar.Bytes()
	return s
}

type tarEntry struct {
	name, data, link string
	mode             int64
	typ              byte
}

func tarGz(t testing.TB, entries []tarEntry) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: typ, Linkname: e.link, ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
