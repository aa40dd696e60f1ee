package fstree

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/assembler/deb"

	"github.com/kilnproject/kiln/internal/testenv"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildAndWalk(t *testing.T) {
	tr := New()
	must(t, tr.AddFile("/usr/bin/tool", []byte("x"), 0o755, "test"))
	must(t, tr.AddFile("etc/motd", []byte("hello\n"), 0o644, "recipe:files[0]"))
	must(t, tr.AddSymlink("bin", "usr/bin", "test"))
	must(t, tr.AddSymlink("usr/bin/sh", "/bin/busybox", "test"))
	must(t, tr.AddDevice("dev/console", fs.ModeDevice|fs.ModeCharDevice|0o600, 5, 1, "init"))
	must(t, tr.AddDir("data", 0o700, "init"))
	must(t, tr.AddDir("data", 0o750, "again")) // directories merge, the last mode wins
	must(t, tr.AddFile("usr-x", []byte("yz"), fs.ModeSetuid|0o755, "test"))

	var got []string
	must(t, tr.Walk(func(n *Node) error {
		got = append(got, fmt.Sprintf("%s %v", n.Path, n.Mode))
		return nil
	}))
	want := []string{
		" drwxr-xr-x", "bin Lrwxrwxrwx", "data drwxr-x---", "dev drwxr-xr-x", "dev/console Dcrw-------",
		"etc drwxr-xr-x", "etc/motd -rw-r--r--", "usr drwxr-xr-x", "usr/bin drwxr-xr-x", "usr/bin/sh Lrwxrwxrwx",
		"usr/bin/tool -rwxr-xr-x", "usr-x urwxr-xr-x",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("walk order:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if tr.Len() != len(want) || tr.Size() != 1+6+2 {
		t.Errorf("Len %d Size %d", tr.Len(), tr.Size())
	}
	if n := tr.Get("/etc/motd"); n == nil || string(n.Data) != "hello\n" || n.Origin != "recipe:files[0]" {
		t.Errorf("Get: %+v", n)
	}
	if n := tr.Get("dev/console"); n.Major != 5 || n.Minor != 1 {
		t.Errorf("device numbers: %+v", n)
	}
	if !tr.Remove("usr") || tr.Get("usr/bin/tool") != nil || tr.Size() != 6+2 {
		t.Errorf("Remove left %d nodes, %d bytes", tr.Len(), tr.Size())
	}
}

func TestReplace(t *testing.T) {
	tr := New()
	must(t, tr.AddFile("etc/hostname", []byte("a\n"), 0o644, "base"))
	err := tr.AddFile("etc/hostname", []byte("b\n"), 0o644, "overlay:x/etc/hostname")
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "etc/hostname (from overlay:x/etc/hostname): path already exists: etc/hostname is already a file from base") {
		t.Errorf("duplicate: %v", err)
	}
	tr.Replace = true
	must(t, tr.AddFile("etc/hostname", []byte("b\n"), 0o600, "overlay"))
	if n := tr.Get("etc/hostname"); string(n.Data) != "b\n" || n.Origin != "overlay" || tr.Size() != 2 {
		t.Errorf("replace: %+v size %d", n, tr.Size())
	}
	must(t, tr.AddSymlink("etc/hostname", "/data/hostname", "overlay2"))
	if n := tr.Get("etc/hostname"); !n.IsSymlink() || tr.Size() != 0 {
		t.Errorf("replace by symlink: %+v", n)
	}
}

// TestRejections checks every kind of refused entry and its message.
func TestRejections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		do       func(t *testing.T, tr *Tree) error
		sentinel error
		want     string
	}{
		{"dot-dot path", func(t *testing.T, tr *Tree) error { return tr.AddFile("../etc/passwd", nil, 0o644, "test") },
			ErrUnsafe, `../etc/passwd (from test): entry escapes the image root: path climbs out of the image root with ".."`},
		{"dot-dot inside path", func(t *testing.T, tr *Tree) error { return tr.AddFile("a/../../b", nil, 0o644, "test") },
			ErrUnsafe, `a/../../b (from test): entry escapes the image root`},
		{"NUL in name", func(t *testing.T, tr *Tree) error { return tr.AddFile("a\x00b", nil, 0o644, "test") },
			ErrUnsafe, "name contains a NUL byte"},
		{"escaping relative symlink", func(t *testing.T, tr *Tree) error { return tr.AddSymlink("etc/ssl/certs", "../../../etc", "test") },
			ErrUnsafe, `symlink target "../../../etc" climbs above the image root; use an absolute target such as "/etc"`},
		{"empty symlink", func(t *testing.T, tr *Tree) error { return tr.AddSymlink("a", "", "test") },
			ErrUnsafe, "symlink has an empty target"},
		{"duplicate file", func(t *testing.T, tr *Tree) error {
			must(t, tr.AddFile("a", nil, 0o644, "one"))
			return tr.AddFile("a", nil, 0o644, "two")
		}, ErrExists, "a (from two): path already exists: a is already a file from one"},
		{"file over a non-empty directory", func(t *testing.T, tr *Tree) error {
			tr.Replace = true
			must(t, tr.AddFile("etc/motd", nil, 0o644, "one"))
			return tr.AddFile("etc", nil, 0o644, "two")
		}, ErrExists, "cannot replace directory etc (from one), which has entries, with a file"},
		{"directory over a file", func(t *testing.T, tr *Tree) error {
			must(t, tr.AddFile("etc", nil, 0o644, "one"))
			return tr.AddDir("etc", 0o755, "two")
		}, ErrExists, "etc is already a file from one"},
		{"path through a symlink", func(t *testing.T, tr *Tree) error {
			must(t, tr.AddSymlink("lib", "usr/lib", "base"))
			return tr.AddFile("lib/modules/x.ko", nil, 0o644, "kmod")
		}, ErrExists, "parent lib is a symlink from base (a symlink to usr/lib); add the entry under the link's target instead"},
		{"tarball absolute name", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "/etc/passwd", body: "x"}), "", "overlay:evil.tar")
		}, ErrUnsafe, "/etc/passwd (from overlay:evil.tar//etc/passwd): entry escapes the image root: absolute name in the tarball"},
		{"tarball dot-dot name", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "gz", tarEntry{name: "ok/../../x", body: "x"}), "", "overlay:evil.tar.gz")
		}, ErrUnsafe, `ok/../../x (from overlay:evil.tar.gz/ok/../../x): entry escapes the image root`},
		{"tarball escaping symlink", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "a/link", typ: tar.TypeSymlink, link: "../../root"}), "", "overlay:t.tar")
		}, ErrUnsafe, `a/link (from overlay:t.tar/a/link): entry escapes the image root: symlink target "../../root" climbs above`},
		{"tarball escaping symlink under dest", func(t *testing.T, tr *Tree) error {
			// Two levels up from opt/app/link is the root: fine; three is not.
			must(t, tr.AddTarball(writeTar(t, "", tarEntry{name: "link", typ: tar.TypeSymlink, link: "../../etc"}), "opt/app", "o:t.tar"))
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "link2", typ: tar.TypeSymlink, link: "../../../etc"}), "opt/app", "o:t.tar")
		}, ErrUnsafe, `climbs above the image root`},
		{"tarball device", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "dev/sda", typ: tar.TypeBlock}), "", "overlay:dev.tar")
		}, ErrDevice, "dev/sda (from overlay:dev.tar/dev/sda): device node not allowed: set allow_devices = true"},
		{"tarball hard link to nothing", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "x", typ: tar.TypeLink, link: "missing"}), "", "o:t.tar")
		}, ErrUnsafe, `x (from o:t.tar/x): entry escapes the image root: hard link to "missing", which is not a file added before it`},
		{"tarball hard link out of the root", func(t *testing.T, tr *Tree) error {
			return tr.AddTarball(writeTar(t, "", tarEntry{name: "x", typ: tar.TypeLink, link: "/etc/shadow"}), "", "o:t.tar")
		}, ErrUnsafe, `hard link to absolute path "/etc/shadow"`},
		{"overlay escaping symlink", func(t *testing.T, tr *Tree) error {
			dir := t.TempDir()
			must(t, os.Symlink("../../../../etc/shadow", filepath.Join(dir, "shadow")))
			return tr.AddOverlayDir(dir, "", "overlay:rootfs")
		}, ErrUnsafe, `shadow (from overlay:rootfs/shadow): entry escapes the image root: symlink target "../../../../etc/shadow"`},
		{"overlay socket", func(t *testing.T, tr *Tree) error {
			dir := t.TempDir()
			l, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				t.Skipf("unix socket: %v", err)
			}
			defer l.Close()
			return tr.AddOverlayDir(dir, "", "overlay:rootfs")
		}, ErrType, "sock (from overlay:rootfs/sock): unsupported entry: a socket cannot go into an image; remove it from the overlay"},
		{"overlay device", func(t *testing.T, tr *Tree) error {
			dir := t.TempDir()
			if err := mknod(filepath.Join(dir, "null"), 1, 3); err != nil {
				t.Skipf("mknod needs root: %v", err)
			}
			return tr.AddOverlayDir(dir, "", "overlay:rootfs")
		}, ErrDevice, "null (from overlay:rootfs/null): device node not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(t, New())
			if err == nil {
				t.Fatal("no error")
			}
			var ee *EntryError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &ee) {
				t.Errorf("error %v is not an *EntryError wrapping %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", err, tc.want)
			}
		})
	}
}

func TestAllowedDevices(t *testing.T) {
	tr := New()
	tr.AllowDevices = true
	must(t, tr.AddTarball(writeTar(t, "", tarEntry{name: "dev/sda", typ: tar.TypeBlock, major: 8}), "", "o"))
	if n := tr.Get("dev/sda"); n == nil || n.Mode&fs.ModeDevice == 0 || n.Mode&fs.ModeCharDevice != 0 || n.Major != 8 {
		t.Errorf("block device: %+v", n)
	}
	dir := t.TempDir()
	if err := mknod(filepath.Join(dir, "null"), 1, 3); err != nil {
		t.Skipf("mknod needs root: %v", err)
	}
	must(t, tr.AddOverlayDir(dir, "dev", "overlay:d"))
	if n := tr.Get("dev/null"); n == nil || n.Mode&fs.ModeCharDevice == 0 || n.Major != 1 || n.Minor != 3 {
		t.Errorf("char device from overlay: %+v", n)
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
	major            int64
	mode             int64
}

func writeTar(t *testing.T, comp string, entries ...tarEntry) string {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Devmajor: e.major, Uid: 1000, Gid: 1000}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		must(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	must(t, tw.Close())
	var out bytes.Buffer
	switch comp {
	case "":
		out = raw
	case "gz":
		w := gzip.NewWriter(&out)
		_, _ = w.Write(raw.Bytes())
		must(t, w.Close())
	case "zst":
		w, _ := zstd.NewWriter(&out)
		_, _ = w.Write(raw.Bytes())
		must(t, w.Close())
	}
	p := filepath.Join(t.TempDir(), "t.tar")
	must(t, os.WriteFile(p, out.Bytes(), 0o644))
	return p
}

func TestAddTarball(t *testing.T) {
	for _, comp := range []string{"", "gz", "zst"} {
		tr := New()
		p := writeTar(t, comp,
			tarEntry{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
			tarEntry{name: "./etc/app.conf", body: "k=v\n", mode: 0o640},
			tarEntry{name: "./etc/app.link", typ: tar.TypeSymlink, link: "app.conf"},
			tarEntry{name: "./etc/app.hard", typ: tar.TypeLink, link: "./etc/app.conf"},
			tarEntry{name: "./run/fifo", typ: tar.TypeFifo},
		)
		must(t, tr.AddTarball(p, "/opt", "overlay:app.tar"))
		n := tr.Get("opt/etc/app.conf")
		if n == nil || string(n.Data) != "k=v\n" || n.Mode != 0o640 || n.UID != 1000 || n.Origin != "overlay:app.tar/etc/app.conf" {
			t.Errorf("%q: file: %+v", comp, n)
		}
		if h := tr.Get("opt/etc/app.hard"); h == nil || string(h.Data) != "k=v\n" {
			t.Errorf("%q: hard link: %+v", comp, h)
		}
		if l := tr.Get("opt/etc/app.link"); l == nil || l.Target != "app.conf" {
			t.Errorf("%q: symlink: %+v", comp, l)
		}
		if f := tr.Get("opt/run/fifo"); f == nil || f.Mode&fs.ModeNamedPipe == 0 {
			t.Errorf("%q: fifo: %+v", comp, f)
		}
	}
}

// TestAddTarballFromTar reads tarballs made by GNU tar with xz and zstd.
func TestAddTarballFromTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not installed")
	}
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "usr/share/app"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "usr/share/app/data.txt"), []byte("payload"), 0o600))
	must(t, os.Symlink("/usr/share/app", filepath.Join(src, "app")))
	for _, c := range []struct{ flag, ext string }{{"-J", "tar.xz"}, {"--zstd", "tar.zst"}, {"-z", "tgz"}} {
		out := filepath.Join(t.TempDir(), "o."+c.ext)
		if b, err := exec.Command("tar", "-C", src, c.flag, "-cf", out, ".").CombinedOutput(); err != nil {
			t.Logf("tar %s: %v %s", c.flag, err, b)
			continue
		}
		tr := New()
		must(t, tr.AddTarball(out, "", "overlay:o"))
		if n := tr.Get("usr/share/app/data.txt"); n == nil || string(n.Data) != "payload" || n.Mode.Perm() != 0o600 {
			t.Errorf("%s: %+v", c.ext, n)
		}
		if n := tr.Get("app"); n == nil || n.Target != "/usr/share/app" {
			t.Errorf("%s: symlink %+v", c.ext, n)
		}
	}
}

func TestAddOverlayDir(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "etc/ssh/sshd_config"), []byte("Port 22\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Symlink("etc/ssh", filepath.Join(dir, "ssh")))
	tr := New()
	must(t, tr.AddFile("etc/ssh/sshd_config", []byte("base"), 0o644, "base"))
	tr.Replace = true
	must(t, tr.AddOverlayDir(dir, "/", "overlay:rootfs"))
	if n := tr.Get("etc/ssh/sshd_config"); string(n.Data) != "Port 22\n" || n.Mode != 0o600 || n.UID != 0 || n.Origin != "overlay:rootfs/etc/ssh/sshd_config" {
		t.Errorf("overlay file: %+v", n)
	}
	if n := tr.Get("etc/ssh"); n.Mode != fs.ModeDir|0o700 {
		t.Errorf("overlay dir mode: %v", n.Mode)
	}
	if n := tr.Get("run.sh"); n.Mode != 0o755 {
		t.Errorf("exec mode: %v", n.Mode)
	}
	if n := tr.Get("ssh"); n.Target != "etc/ssh" {
		t.Errorf("symlink: %+v", n)
	}
	if n := tr.Get(""); n.Mode != fs.ModeDir|0o755 {
		t.Errorf("the root's mode changed: %v", n.Mode)
	}
}

func TestAddDeb(t *testing.T) {
	dir := deb.CacheDir()
	if m, _ := filepath.Glob(filepath.Join(dir, "busybox-static_*.deb")); len(m) == 0 {
		testenv.Missing(t, "no busybox-static in %s: run `make inputs`", dir)
	}
	pkg, err := deb.Resolve(dir, "busybox-static")
	must(t, err)
	tr := New()
	must(t, tr.AddDeb(pkg, func(p string) bool { return p == "bin/busybox" || strings.HasPrefix(p, "usr/share/doc/") },
		func(p string) string {
			if strings.HasPrefix(p, "usr/share/doc/") {
				return "" // skipped
			}
			return "usr/" + p
		}))
	n := tr.Get("usr/bin/busybox")
	if n == nil || len(n.Data) < 500_000 || n.Mode.Perm() != 0o755 {
		t.Fatalf("busybox: %+v", n)
	}
	if want := "busybox-static " + pkg.Version + " /bin/busybox"; n.Origin != want {
		t.Errorf("origin %q, want %q", n.Origin, want)
	}
	if tr.Len() != 4 || tr.Get("usr/share") != nil { // root, usr, usr/bin, usr/bin/busybox
		var all []string
		_ = tr.Walk(func(n *Node) error { all = append(all, n.Path); return nil })
		t.Errorf("unexpected nodes: %v", all)
	}
}
