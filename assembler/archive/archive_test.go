package archive

import (
	"bytes"
	"context"
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

// testArchive is a small Debian archive made and signed by the test and served on 127.0.0.1.
type testArchive struct {
	t        *testing.T
	key      *openpgp.Entity
	keyring  string // armored public key file
	files    map[string][]byte
	srv      *httptest.Server
	byHash   bool
	allIndex bool // "all" packages only in binary-all, listed in Architectures
	tamper   func(path string, b []byte) []byte
	mu       sync.Mutex
	requests []string
}

var testKey *openpgp.Entity

func signingKey(t testing.TB) *openpgp.Entity {
	t.Helper()
	if testKey == nil {
		// Ed25519 signs fast, which the InRelease fuzz target needs; the real-archive test
		// covers Debian's RSA keys.
		k, err := openpgp.NewEntity("Kiln test archive", "", "test@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		testKey = k
	}
	return testKey
}

func armoredPublic(t *testing.T, e *openpgp.Entity) []byte {
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

// stanza is a compact package description for tests: "name version" plus fields.
type stanza struct {
	name, version, arch string
	fields              map[string]string
}

func pkg(name, version string, kv ...string) stanza {
	s := stanza{name: name, version: version, arch: "amd64", fields: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "Architecture" {
			s.arch = kv[i+1]
			continue
		}
		s.fields[kv[i]] = kv[i+1]
	}
	return s
}

// deb returns the content of a fake .deb for s (fetch tests only check bytes).
func (s stanza) deb() []byte {
	return bytes.Repeat([]byte(s.name+"_"+s.version+"\n"), 200)
}

func (s stanza) filename() string {
	return fmt.Sprintf("pool/main/%s/%s/%s_%s_%s.deb", s.name[:1], s.name, s.name, strings.ReplaceAll(s.version, ":", "_"), s.arch)
}

func packagesText(pkgs []stanza) []byte {
	var b bytes.Buffer
	for _, s := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", s.name, s.version, s.arch)
		keys := make([]string, 0, len(s.fields))
		for k := range s.fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %s\n", k, s.fields[k])
		}
		deb := s.deb()
		sum := sha256.Sum256(deb)
		fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %x\nDescription: test package %s\n second line\n\n", s.filename(), len(deb), sum, s.name)
	}
	return b.Bytes()
}

func xzCompress(t *testing.T, data []byte) []byte {
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

// newTestArchive serves suite "stable" with component main for amd64 holding pkgs; extra
// Release fields (e.g. "Valid-Until") may be given.
func newTestArchive(t *testing.T, pkgs []stanza, release map[string]string) *testArchive {
	t.Helper()
	ta := &testArchive{t: t, key: signingKey(t), files: map[string][]byte{}, byHash: true}
	ta.keyring = filepath.Join(t.TempDir(), "archive-key.asc")
	if err := os.WriteFile(ta.keyring, armoredPublic(t, ta.key), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range pkgs {
		ta.files[s.filename()] = s.deb()
	}
	ta.publish(pkgs, release)
	ta.srv = httptest.NewServer(http.HandlerFunc(ta.serve))
	t.Cleanup(ta.srv.Close)
	return ta
}

func (ta *testArchive) publish(pkgs []stanza, release map[string]string) {
	t := ta.t
	arches := []string{"amd64", "i386"}
	if ta.allIndex {
		arches = append(arches, "all")
	}
	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Test\nSuite: stable\nCodename: stable\nDate: %s\nArchitectures: %s\nComponents: main\n",
		time.Now().UTC().Add(-time.Hour).Format(time.RFC1123), strings.Join(arches, " "))
	if ta.byHash {
		rel.WriteString("Acquire-By-Hash: yes\n")
	}
	for k, v := range release {
		fmt.Fprintf(&rel, "%s: %s\n", k, v)
	}
	rel.WriteString("SHA256:\n")
	for _, arch := range arches {
		var these []stanza
		for _, s := range pkgs {
			if s.arch == arch || s.arch == "all" && (!ta.allIndex || arch == "all") {
				these = append(these, s)
			}
		}
		plain := packagesText(these)
		dir := "main/binary-" + arch + "/"
		for _, f := range []struct {
			path string
			data []byte
		}{{dir + "Packages", plain}, {dir + "Packages.xz", xzCompress(t, plain)}} {
			sum := sha256.Sum256(f.data)
			fmt.Fprintf(&rel, " %x %d %s\n", sum, len(f.data), f.path)
			ta.setFile("dists/stable/"+f.path, f.data)
			ta.setFile("dists/stable/"+dir+"by-hash/SHA256/"+hex.EncodeToString(sum[:]), f.data)
		}
	}
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, ta.key.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rel.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ta.setFile("dists/stable/InRelease", signed.Bytes())
}

// setFile and setTamper change what the server serves, under its lock.
func (ta *testArchive) setFile(path string, b []byte) {
	ta.mu.Lock()
	ta.files[path] = b
	ta.mu.Unlock()
}

func (ta *testArchive) setTamper(f func(path string, b []byte) []byte) {
	ta.mu.Lock()
	ta.tamper = f
	ta.mu.Unlock()
}

func (ta *testArchive) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/debian/")
	ta.mu.Lock()
	ta.requests = append(ta.requests, p)
	if rg := r.Header.Get("Range"); rg != "" {
		ta.requests = append(ta.requests, p+" "+rg)
	}
	files, tamper := ta.files, ta.tamper
	ta.mu.Unlock()
	b, ok := files[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if tamper != nil {
		b = tamper(p, b)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// seen returns the paths requested so far, and "path range" for range requests.
func (ta *testArchive) seen() []string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return append([]string(nil), ta.requests...)
}

func (ta *testArchive) source() Source {
	return Source{URI: ta.srv.URL + "/debian", Suite: "stable", Components: []string{"main"}, SignedBy: ta.keyring}
}

func (ta *testArchive) load(t *testing.T, arches ...string) (*Archive, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(arches) == 0 {
		arches = []string{"amd64"}
	}
	c := &Client{Sources: []Source{ta.source()}, Arches: arches}
	return c.Load(ctx)
}

func names(pkgs []*Package) string {
	var s []string
	for _, p := range pkgs {
		s = append(s, p.Name+"="+p.Version)
	}
	return strings.Join(s, " ")
}
