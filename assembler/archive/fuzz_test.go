package archive

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/kilnproject/kiln/assembler/deb"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

// fuzzLimits keep a fuzzed input's memory small.
var fuzzLimits = Limits{Field: 4 << 10, Paragraph: 16 << 10, Total: 1 << 20}

// formatPackage writes back the fields ParsePackages reads.
func formatPackage(p *Package) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.Name, p.Version, p.Arch)
	if p.MultiArch != "" {
		fmt.Fprintf(&b, "Multi-Arch: %s\n", p.MultiArch)
	}
	if p.Essential {
		b.WriteString("Essential: yes\n")
	}
	if p.Priority != "" {
		fmt.Fprintf(&b, "Priority: %s\n", p.Priority)
	}
	rel := func(name string, rs []Relation) {
		if len(rs) > 0 {
			s := make([]string, len(rs))
			for i, r := range rs {
				s[i] = r.String()
			}
			fmt.Fprintf(&b, "%s: %s\n", name, strings.Join(s, ", "))
		}
	}
	rel("Depends", p.Depends)
	rel("Pre-Depends", p.PreDepends)
	rel("Conflicts", p.Conflicts)
	rel("Breaks", p.Breaks)
	if len(p.Provides) > 0 {
		rs := make([]Relation, len(p.Provides))
		for i, d := range p.Provides {
			rs[i] = Relation{d}
		}
		rel("Provides", rs)
	}
	fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %s\n", p.Filename, p.Size, p.SHA256)
	if p.Description != "" {
		fmt.Fprintf(&b, "Description: %s\n", p.Description)
	}
	if p.InstalledSize != 0 {
		fmt.Fprintf(&b, "Installed-Size: %d\n", p.InstalledSize>>10)
	}
	return b.String()
}

func FuzzParsePackages(f *testing.F) {
	f.Add([]byte(archivetest.PackagesText(universe[:3])))
	f.Add([]byte("Package: a\nVersion: 1:2.0~rc1-3\nArchitecture: all\nDepends: b (>= 1) | c:any, d [amd64] <!nocheck>\nProvides: e (= 1)\nFilename: pool/a.deb\nSize: 1\nSHA256: " + strings.Repeat("0", 64) + "\n"))
	f.Add([]byte("Package: a\n continuation\n\n\n#comment\nVersion: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pkgs []*Package
		err := ParsePackages(bytes.NewReader(data), fuzzLimits, func(p *Package) error {
			pkgs = append(pkgs, p)
			return nil
		})
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if !validName(p.Name) || deb.CheckVersion(p.Version) != nil || !isSHA256(p.SHA256) || checkFilename(p.Filename) != nil || p.Size < 0 {
				t.Fatalf("accepted an invalid package %+v", p)
			}
			// What was read writes back and reads again to the same package.
			var again []*Package
			if err := ParsePackages(strings.NewReader(formatPackage(p)), DefaultLimits, func(q *Package) error {
				again = append(again, q)
				return nil
			}); err != nil || len(again) != 1 {
				t.Fatalf("re-reading %q: %v (%d packages)", formatPackage(p), err, len(again))
			}
			if !reflect.DeepEqual(normRelations(p), normRelations(again[0])) {
				t.Fatalf("round trip differs:\n%+v\n%+v", p, again[0])
			}
		}
	})
}

// normRelations makes nil and empty slices compare equal.
func normRelations(p *Package) *Package {
	q := *p
	for _, r := range []*[]Relation{&q.Depends, &q.PreDepends, &q.Conflicts, &q.Breaks} {
		if len(*r) == 0 {
			*r = nil
		}
	}
	if len(q.Provides) == 0 {
		q.Provides = nil
	}
	return &q
}

func FuzzInRelease(f *testing.F) {
	f.Add([]byte("Suite: stable\nDate: Sat, 10 Jun 2023 08:50:29 UTC\nAcquire-By-Hash: yes\nSHA256:\n "+strings.Repeat("a", 64)+" 12 main/binary-amd64/Packages.xz\n"), false)
	f.Add([]byte("Suite: stable\nSHA256:\n bad\n"), true)
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"), true)
	key := archivetest.SigningKey(f)
	keyring := openpgp.EntityList{key}
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, text []byte, raw bool) {
		if len(text) > 64<<10 {
			return
		}
		if raw {
			// Arbitrary bytes as InRelease: refused, never a crash.
			if rel, err := VerifyInRelease(text, keyring, now); err == nil {
				t.Fatalf("unsigned input accepted: %+v", rel)
			}
			return
		}
		// Text signed with the trusted key: the signature always verifies, and what parses is
		// what the signed text says.
		var signed bytes.Buffer
		w, err := clearsign.Encode(&signed, key.PrivateKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(text)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rel, err := VerifyInRelease(signed.Bytes(), keyring, now)
		if errors.Is(err, ErrSignature) {
			t.Fatalf("own signature refused: %v\n%q", err, signed.Bytes())
		}
		if err != nil {
			return
		}
		direct, err := ParseRelease(text)
		if err != nil {
			t.Fatalf("verified text does not parse on its own: %v", err)
		}
		if !reflect.DeepEqual(rel.Files, direct.Files) {
			t.Fatalf("file list of the signed part differs from the text's")
		}
		for p, fh := range rel.Files {
			if !isSHA256(fh.SHA256) || fh.Size < 0 || p == "" {
				t.Fatalf("bad file entry %q %+v", p, fh)
			}
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	for _, s := range [][3]string{{"1.0", "1.0-1", "1:0.9"}, {"1.0~rc1", "1.0", "1.0+b1"}, {"2.36-9", "2.36-9+deb12u1", "2.36-10"}, {"01", "1", "1.00"}, {"1a", "1+", "1~~"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		// The order is checked on what the archive admits: well-formed versions.
		if deb.CheckVersion(a) != nil || deb.CheckVersion(b) != nil || deb.CheckVersion(c) != nil {
			return
		}
		ab, ba := deb.CompareVersions(a, b), deb.CompareVersions(b, a)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("antisymmetry: cmp(%q,%q)=%d, cmp(%q,%q)=%d", a, b, ab, b, a, ba)
		}
		if deb.CompareVersions(a, a) != 0 {
			t.Fatalf("cmp(%q,%q) != 0", a, a)
		}
		bc, ac := deb.CompareVersions(b, c), deb.CompareVersions(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("transitivity: %q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
		if ab == 0 && ac != bc {
			t.Fatalf("%q == %q but they compare differently with %q (%d, %d)", a, b, c, ac, bc)
		}
	})
}

func FuzzParseRelations(f *testing.F) {
	for _, s := range []string{"libc6 (>= 2.34), python3:any | foo [amd64 !i386] <!nocheck>, bar (<< 1)", "a (< 1), b (> 2)", "a,,b|c", "x:native (= 1:2-3)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rels, err := ParseRelations(s)
		if err != nil {
			return
		}
		parts := make([]string, len(rels))
		for i, r := range rels {
			if len(r) == 0 {
				t.Fatalf("empty relation from %q", s)
			}
			parts[i] = r.String()
		}
		again, err := ParseRelations(strings.Join(parts, ", "))
		if err != nil || !reflect.DeepEqual(rels, again) {
			t.Fatalf("round trip of %q via %q: %v\n%+v\n%+v", s, strings.Join(parts, ", "), err, rels, again)
		}
	})
}

func FuzzReadLock(f *testing.F) {
	l := NewLock("amd64", []*Package{{Name: "hello", Version: "2.10-3", Arch: "amd64", Filename: "pool/main/h/hello/hello_2.10-3_amd64.deb",
		Size: 53000, SHA256: strings.Repeat("ab", 32), Origin: &Origin{Suite: "bookworm", Component: "main"}}})
	good, _ := l.Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1,"arch":"amd64","packages":[]}`))
	l.Requests, l.Inputs = []string{"hello (>= 2)", "mawk | gawk"}, []string{"linux-image-amd64"}
	l.Packages[0].Mirror, l.Packages[0].Input = "http://127.0.0.1:8080/debian", true
	full, _ := l.Marshal()
	f.Add(full)
	f.Add([]byte(`{"version":1,"arch":"amd64","requests":["a ("],"packages":[]}`))
	f.Add([]byte(`{"version":1,"arch":"amd64","packages":[{"name":"a","filename":"../x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ReadLock(bytes.NewReader(data))
		if err != nil {
			return
		}
		out, err := l.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ReadLock(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("a lock read back from its own output fails: %v", err)
		}
		if !reflect.DeepEqual(normLock(l), normLock(back)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", l, back)
		}
		for _, p := range back.Packages {
			if checkFilename(p.Filename) != nil || !isSHA256(p.SHA256) {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}

func normLock(l *Lock) *Lock {
	c := *l
	if len(c.Packages) == 0 {
		c.Packages = nil
	}
	if len(c.Requests) == 0 {
		c.Requests = nil
	}
	if len(c.Inputs) == 0 {
		c.Inputs = nil
	}
	return &c
}

func FuzzParseSources(f *testing.F) {
	f.Add([]byte("deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian stable main contrib\ndeb-src http://x.invalid/d s main\n"), false)
	f.Add([]byte("Types: deb deb-src\nURIs: http://mirror.invalid/debian\nSuites: stable stable-updates\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, deb822 bool) {
		if len(data) > 1<<20 {
			return
		}
		parse := ParseSourcesList
		if deb822 {
			parse = ParseDeb822Sources
		}
		srcs, err := parse(data, "fuzz")
		if err != nil {
			return
		}
		for _, s := range srcs {
			if err := s.check(); err != nil {
				t.Fatalf("returned a source that fails its own check: %+v: %v", s, err)
			}
		}
	})
}
