package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kilnproject/kiln/internal/testenv"
)

type entry struct {
	name, body, link string
	typ              byte
}

func tarball(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
			h.Mode = 0o755
		}
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func compress(t *testing.T, comp string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch comp {
	case "":
		return data
	case "gz":
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(data)
		must(t, w.Close())
	case "xz":
		w, err := xz.NewWriter(&buf)
		must(t, err)
		_, _ = w.Write(data)
		must(t, w.Close())
	case "zst":
		w, err := zstd.NewWriter(&buf)
		must(t, err)
		_, _ = w.Write(data)
		must(t, w.Close())
	case "bz2":
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("bzip2 not installed")
		}
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		must(t, err)
		return out
	default:
		t.Fatalf("unknown compression %q", comp)
	}
	return buf.Bytes()
}

type member2 struct {
	name string
	data []byte
}

func ar(members ...member2) []byte {
	var buf bytes.Buffer
	buf.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

func control(name, version, depends string) []byte {
	s := "Package: " + name + "\nVersion: " + version + "\nArchitecture: amd64\nMaintainer: Kiln <kiln@example.org>\n"
	if depends != "" {
		s += "Depends: " + depends + "\n"
	}
	s += "Description: test package\n a second line\n"
	return []byte(s)
}

var sampleData = []entry{
	{name: "./", typ: tar.TypeDir},
	{name: "./bin/", typ: tar.TypeDir},
	{name: "./bin/hello", body: "#!/bin/sh\necho hello\n"},
	{name: "./bin/hi", typ: tar.TypeSymlink, link: "hello"},
	{name: "./bin/hardhello", typ: tar.TypeLink, link: "./bin/hello"},
	{name: "./usr/share/doc/hello/copyright", body: "free\n"},
}

func makeDeb(t *testing.T, dir, file, ctlComp, dataComp string, ctl []byte, data []entry) string {
	t.Helper()
	ctlTar := compress(t, ctlComp, tarball(t, []entry{{name: "./", typ: tar.TypeDir}, {name: "./control", body: string(ctl)}}))
	dataTar := compress(t, dataComp, tarball(t, data))
	suffix := func(c string) string {
		if c == "" {
			return ""
		}
		return "." + c
	}
	b := ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar" + suffix(ctlComp), ctlTar}, member2{"data.tar" + suffix(dataComp), dataTar})
	p := filepath.Join(dir, file)
	must(t, os.WriteFile(p, b, 0o644))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func walkAll(t *testing.T, p *Package) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := p.Walk(func(h *tar.Header, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[h.Name] = fmt.Sprintf("%c:%s:%s", h.Typeflag, h.Linkname, b)
		return err
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return got
}

func TestOpenAndWalkEveryCompression(t *testing.T) {
	modes := []string{"go"}
	if _, err := exec.LookPath("xz"); err == nil {
		modes = append(modes, "exec")
	}
	for _, mode := range modes {
		for _, comp := range []struct{ ctl, data string }{{"xz", "xz"}, {"zst", "zst"}, {"gz", "gz"}, {"", ""}, {"xz", "bz2"}} {
			t.Run(mode+"/"+comp.ctl+"-"+comp.data, func(t *testing.T) {
				defer func(m string) { XZMode = m }(XZMode)
				XZMode = mode
				path := makeDeb(t, t.TempDir(), "hello_1.0-1_amd64.deb", comp.ctl, comp.data,
					control("hello", "1:1.0-1", "libc6 (>= 2.34), a | b:any, c [amd64]"), sampleData)
				p, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if p.Name != "hello" || p.Version != "1:1.0-1" || p.Arch != "amd64" || p.DataCompression() != comp.data {
					t.Errorf("control: %+v", p)
				}
				if p.Control["Description"] != "test package\na second line" {
					t.Errorf("description: %q", p.Control["Description"])
				}
				wantDeps := "[[libc6 (>= 2.34)] [a b:any] [c]]"
				if fmt.Sprint(p.Depends) != wantDeps {
					t.Errorf("depends = %v, want %s", p.Depends, wantDeps)
				}
				got := walkAll(t, p)
				want := map[string]string{
					"bin":                           "5::",
					"bin/hello":                     "0::#!/bin/sh\necho hello\n",
					"bin/hi":                        "2:hello:",
					"bin/hardhello":                 "1:bin/hello:",
					"usr/share/doc/hello/copyright": "0::free\n",
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("walk:\n got %v\nwant %v", got, want)
				}
				b, err := p.ReadFile("/bin/hello")
				if err != nil || string(b) != "#!/bin/sh\necho hello\n" {
					t.Errorf("ReadFile = %q, %v", b, err)
				}
				if _, err := p.ReadFile("bin/nope"); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("ReadFile of a missing file: %v", err)
				}
			})
		}
	}
}

// TestBadPackages checks each way a package can be broken and the message the user gets.
func TestBadPackages(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(makeDeb(t, dir, "good.deb", "xz", "xz", control("hello", "1.0", ""), sampleData))
	must(t, err)
	ctlTar := compress(t, "xz", tarball(t, []entry{{name: "./control", body: string(control("hello", "1.0", ""))}}))
	dataTar := tarball(t, sampleData)
	dataXZ := compress(t, "xz", dataTar)
	for _, tc := range []struct {
		name     string
		data     []byte
		sentinel error
		want     string
		walk     bool // the error shows when the data is read
	}{
		{"empty file", nil, ErrNotDeb, "not a Debian package: no ar archive header", false},
		{"text file", []byte("hello, world\n"), ErrNotDeb, "no ar archive header", false},
		{"ar without debian-binary", ar(member2{"control.tar.xz", ctlTar}), ErrNotDeb,
			`the first member is "control.tar.xz", want debian-binary`, false},
		{"future format", ar(member2{"debian-binary", []byte("3.0\n")}), ErrNotDeb, `format "3.0"`, false},
		{"missing data member", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.xz", ctlTar}), ErrMissingMember,
			"missing package member: no data.tar.{xz,zst,gz} member (members: debian-binary, control.tar.xz)", false},
		{"missing control member", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"data.tar.xz", dataXZ}), ErrMissingMember,
			"no control.tar.{xz,zst,gz} member", false},
		{"truncated in a member", good[:len(good)-100], ErrTruncated,
			"truncated package: member data.tar.xz needs", false},
		{"truncated in an ar header", good[:len(arMagic)+30], ErrTruncated, "ar header at byte 8 is cut off; download the package again", false},
		{"gzip data named xz", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.xz", ctlTar},
			member2{"data.tar.xz", compress(t, "gz", dataTar)}), ErrCompression,
			"data.tar.xz holds gz data, not xz; the package is damaged or was built wrongly", true},
		{"plain tar named zst", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.xz", ctlTar},
			member2{"data.tar.zst", dataTar}), ErrCompression, "data.tar.zst holds an uncompressed tar, not zst", true},
		{"garbage control", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.gz", []byte("garbage!")},
			member2{"data.tar.xz", dataXZ}), ErrCompression, "control.tar.gz holds unrecognised data, not gz", false},
		{"xz stream cut inside the member", ar(member2{"debian-binary", []byte("2.0\n")}, member2{"control.tar.xz", ctlTar},
			member2{"data.tar.xz", dataXZ[:len(dataXZ)/2]}), ErrTruncated, "download the package again", true},
		{"no control file", ar(member2{"debian-binary", []byte("2.0\n")},
			member2{"control.tar.xz", compress(t, "xz", tarball(t, []entry{{name: "./md5sums", body: "x"}}))},
			member2{"data.tar.xz", dataXZ}), ErrMissingMember, "control.tar.xz has no control file", false},
	} {
		for _, mode := range []string{"go", "exec"} {
			if mode == "exec" {
				if _, err := exec.LookPath("xz"); err != nil {
					continue
				}
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				defer func(m string) { XZMode = m }(XZMode)
				XZMode = mode
				path := filepath.Join(t.TempDir(), "bad.deb")
				must(t, os.WriteFile(path, tc.data, 0o644))
				p, err := Open(path)
				if tc.walk {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					err = p.Walk(func(*tar.Header, io.Reader) error { return nil })
				}
				if err == nil {
					t.Fatal("no error")
				}
				if !errors.Is(err, tc.sentinel) {
					t.Errorf("error %q does not wrap %v", err, tc.sentinel)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
					t.Errorf("error\n  %s\ndoes not name the file and contain\n  %s", err, tc.want)
				}
			})
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	makeDeb(t, dir, "kernel-image_1.0-1_amd64.deb", "xz", "xz", control("kernel-image", "1.0-1", "kernel-image-5 (= 5.0-2)"),
		[]entry{{name: "./usr/share/doc/kernel-image/changelog.gz", body: "x"}})
	makeDeb(t, dir, "kernel-image-5_5.0-1_amd64.deb", "xz", "xz", control("kernel-image-5", "5.0-1", ""), sampleData)
	makeDeb(t, dir, "kernel-image-5_5.0-2_amd64.deb", "xz", "xz", control("kernel-image-5", "5.0-2", ""), sampleData)
	makeDeb(t, dir, "kernel-image-5_5.0-10~bpo_amd64.deb", "xz", "xz", control("kernel-image-5", "5.0-10~bpo", ""), sampleData)
	makeDeb(t, dir, "tool_1%3a0.9_amd64.deb", "xz", "xz", control("tool", "1:0.9", ""), sampleData)
	makeDeb(t, dir, "tool_2.0_amd64.deb", "xz", "xz", control("tool", "2.0", ""), sampleData)
	makeDeb(t, dir, "broken-meta_1_all.deb", "xz", "xz", control("broken-meta", "1", "nothere (>= 3) | alsonot"), nil)

	p, err := Resolve(dir, "kernel-image")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "kernel-image-5" || p.Version != "5.0-2" || p.Via != "kernel-image 1.0-1" {
		t.Errorf("metapackage resolved to %s via %q", p, p.Via)
	}
	if p, err := Resolve(dir, "kernel-image-5"); err != nil || p.Version != "5.0-10~bpo" || p.Via != "" {
		t.Errorf("highest version: %v, %v", p, err)
	}
	if p, err := Resolve(dir, "tool"); err != nil || p.Version != "1:0.9" {
		t.Errorf("epoch must win: %v, %v", p, err)
	}
	if p, err := Resolve("", filepath.Join(dir, "kernel-image_1.0-1_amd64.deb")); err != nil || p.Version != "5.0-2" {
		t.Errorf("path to a metapackage: %v, %v", p, err)
	}
	_, err = Resolve(dir, "busybox")
	if !errors.Is(err, ErrPackageMissing) || !strings.Contains(err.Error(), "find package busybox in "+dir+": package not found; run `make inputs`") {
		t.Errorf("missing package: %v", err)
	}
	_, err = Resolve(dir, "broken-meta")
	if !errors.Is(err, ErrPackageMissing) || !strings.Contains(err.Error(), "none of its dependencies (nothere (>= 3), alsonot)") {
		t.Errorf("broken metapackage: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	ordered := []string{"0.9", "1.0~rc1", "1.0", "1.0-1", "1.0-1+b1", "1.0-2", "1.0-10", "1.0a", "1.0.1", "1.2", "1.10",
		"6.1.192-2", "6.1.192-10", "1:0.1", "1:1.35.0-4+deb12u1+b1", "2:0"}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareVersions(ordered[i], ordered[j]); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if CompareVersions("1.0-01", "1.0-1") != 0 || CompareVersions("0:1.0", "1.0") != 0 {
		t.Error("leading zeros and zero epoch must compare equal")
	}
}

// realCache returns the input cache, skipping locally (failing under CI=true) when the package is
// not there.
func realCache(t *testing.T, glob string) string {
	t.Helper()
	dir := CacheDir()
	if m, _ := filepath.Glob(filepath.Join(dir, glob)); len(m) == 0 {
		testenv.Missing(t, "no %s in %s: run `make inputs`", glob, dir)
	}
	return dir
}

func TestRealPackages(t *testing.T) {
	dir := realCache(t, "linux-image-amd64_*.deb")
	realCache(t, "busybox-static_*.deb")

	bb, err := Resolve(dir, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	if bb.Arch != "amd64" || !strings.HasPrefix(bb.Version, "1:") || bb.Via != "" {
		t.Errorf("busybox-static: %+v", bb)
	}
	b, err := bb.ReadFile("bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 500_000 || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Errorf("bin/busybox is %d bytes, not an ELF binary", len(b))
	}
	// Both xz decoders agree byte for byte with the reference tools.
	ref := exec.Command("sh", "-c", "ar p '"+bb.Path+"' data.tar.xz | xz -dc | sha256sum")
	out, err := ref.Output()
	if err != nil {
		t.Skipf("reference tools: %v", err)
	}
	for _, mode := range []string{"go", "exec"} {
		XZMode = mode
		f, _ := os.Open(bb.Path)
		sec := io.NewSectionReader(f, bb.data.off, bb.data.size)
		r, closeFn, err := decompress(sec, bb.data)
		must(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		must(t, err)
		must(t, closeFn())
		f.Close()
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != strings.Fields(string(out))[0] {
			t.Errorf("%s: data.tar sha256 %s, reference %s", mode, got, out)
		}
	}
	XZMode = ""

	k, err := Resolve(dir, "linux-image-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Name, "linux-image-6.") || !strings.HasPrefix(k.Via, "linux-image-amd64 ") {
		t.Errorf("linux-image-amd64 resolved to %s via %q", k, k.Via)
	}
	// The kernel comes first in the data tarball: finding it stops the stream early.
	var vmlinuz []byte
	err = k.Walk(func(h *tar.Header, r io.Reader) error {
		if strings.HasPrefix(h.Name, "boot/vmlinuz-") {
			vmlinuz, err = io.ReadAll(r)
			if err != nil {
				return err
			}
			return io.EOF // any error stops the walk and is returned
		}
		return nil
	})
	if !errors.Is(err, io.EOF) {
		t.Errorf("walk stop: %v", err)
	}
	if len(vmlinuz) < 1<<20 || string(vmlinuz[0x202:0x206]) != "HdrS" {
		t.Errorf("vmlinuz (%d bytes) is not a bzImage", len(vmlinuz))
	}
}

// TestRealKernelParallelXZ decodes the whole kernel package with the Go decoder (all blocks, in
// parallel) and compares the stream with xz's.
func TestRealKernelParallelXZ(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 400 MB")
	}
	dir := realCache(t, "linux-image-6.*.deb")
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed")
	}
	m, _ := filepath.Glob(filepath.Join(dir, "linux-image-6.*.deb"))
	p, err := Open(m[0])
	must(t, err)
	sum := func(mode string) string {
		XZMode = mode
		defer func() { XZMode = "" }()
		f, _ := os.Open(p.Path)
		defer f.Close()
		r, closeFn, err := decompress(io.NewSectionReader(f, p.data.off, p.data.size), p.data)
		must(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		must(t, err)
		must(t, closeFn())
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	if g, x := sum("go"), sum("exec"); g != x {
		t.Errorf("Go decoder sha256 %s, xz %s", g, x)
	}
}

// BenchmarkWalkKernel streams every entry of the kernel package (what `dpkg-deb --fsys-tarfile |
// tar -x` reads) with each xz decoder; bench/deb.sh compares it with the shell tools.
func BenchmarkWalkKernel(b *testing.B) {
	dir := CacheDir()
	m, _ := filepath.Glob(filepath.Join(dir, "linux-image-6.*.deb"))
	if len(m) == 0 {
		b.Skip("no linux-image-6.* package in " + dir)
	}
	p, err := Open(m[0])
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"exec", "go"} {
		b.Run(mode, func(b *testing.B) {
			defer func(m string) { XZMode = m }(XZMode)
			XZMode = mode
			b.SetBytes(410 << 20)
			buf := make([]byte, 256<<10)
			for range b.N {
				err := p.Walk(func(h *tar.Header, r io.Reader) error {
					_, err := io.CopyBuffer(io.Discard, r, buf)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
