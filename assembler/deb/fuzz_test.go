package deb

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// seedTar is a small tarball for the seed corpus: name, contents, name, contents...
func seedTar(files ...string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		name, body := files[i], files[i+1]
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func seedGzip(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

// FuzzOpen feeds arbitrary bytes to Open and Walk as a .deb. Either is an error or a package with a
// name and a version whose entries have clean relative names; nothing panics, and the ar index
// read stays bounded whatever the headers claim.
func FuzzOpen(f *testing.F) {
	ctl := seedTar("./control", string(control("hello", "1.0-1", "libc6 (>= 2.34) | musl")))
	data := seedTar("./usr/bin/hello", "#!/bin/sh\n", "./etc/hello.conf", "x=1\n", "../escape", "x")
	f.Add(ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.gz", seedGzip(ctl)}, member2{"data.tar.gz", seedGzip(data)}))
	f.Add(ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar", ctl}, member2{"data.tar", data}))
	f.Add(ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar", ctl}))
	f.Add([]byte(arMagic + "debian-binary   0           0     0     100644  999999999999`\n"))
	f.Add([]byte("!<arch>\n"))
	XZMode = "go" // no xz process per input
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, fmt.Sprintf("in-%d.deb", os.Getpid()))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		members, err := readAr(bytes.NewReader(b), int64(len(b)))
		if err == nil && len(members) > maxMembers {
			t.Fatalf("ar index of %d members", len(members))
		}
		for _, m := range members {
			if m.off < 0 || m.size < 0 || m.off+m.size > int64(len(b)) {
				t.Fatalf("member %+v outside the %d-byte file", m, len(b))
			}
		}
		p, err := Open(path)
		if err != nil {
			return
		}
		if p.Name == "" || p.Version == "" {
			t.Fatalf("package without name or version: %+v", p)
		}
		// Read at most 4 MiB of contents: a small input may decompress to far more.
		budget := int64(4 << 20)
		p.Walk(func(h *tar.Header, r io.Reader) error {
			if h.Name == "" || strings.HasPrefix(h.Name, "/") || h.Name == ".." || strings.HasPrefix(h.Name, "../") ||
				strings.Contains(h.Name, "/../") {
				t.Fatalf("entry name %q is not clean and relative", h.Name)
			}
			n, _ := io.Copy(io.Discard, io.LimitReader(r, budget))
			if budget -= n; budget <= 0 {
				return fs.SkipAll
			}
			return nil
		})
	})
}

// FuzzParseControl: any control paragraph parses without panicking into fields with non-empty,
// single-line names, and its relation fields into non-empty package names.
func FuzzParseControl(f *testing.F) {
	f.Add(control("hello", "1.0-1", "libc6 (>= 2.34), a | b [amd64], c:any (<< 3)"))
	f.Add([]byte("Package: x\n continuation\n\nPackage: second\n"))
	f.Add([]byte(": no name\n\t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctl := ParseControl(b)
		for k := range ctl {
			if strings.ContainsAny(k, "\n") {
				t.Fatalf("field name %q spans lines", k)
			}
		}
		for _, alts := range ParseRelations(ctl["Depends"]) {
			if len(alts) == 0 {
				t.Fatal("empty alternative list")
			}
			for _, r := range alts {
				if strings.ContainsAny(r.Name, ",|") {
					t.Fatalf("relation name %q holds a separator", r.Name)
				}
			}
		}
	})
}
