package dpkgconf

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// tarOf writes the files of m as the namespace child does.
func tarOf(t testing.TB, m fstest.MapFS, owners map[string][2]int) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := fs.WalkDir(m, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel := p
		if rel == "." {
			rel = ""
		}
		var target string
		if fi.Mode()&fs.ModeSymlink != 0 {
			target = string(m[p].Data)
		}
		o := owners[rel]
		return writeTarEntry(tw, rel, fi, o[0], o[1], target, func() (io.ReadCloser, error) { return m.Open(p) })
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return b.Bytes()
}

// TestReadTar: the child's stream becomes the tree with owners, special modes and origins.
func TestReadTar(t *testing.T) {
	m := fstest.MapFS{
		".":          {Mode: fs.ModeDir | 0o755},
		"srv":        {Mode: fs.ModeDir | 0o750},
		"srv/state":  {Data: []byte("x"), Mode: fs.ModeSetuid | 0o750},
		"bin":        {Mode: fs.ModeDir | 0o755},
		"bin/sh":     {Data: []byte("dash"), Mode: fs.ModeSymlink | 0o777},
		"tmp2":       {Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		"etc":        {Mode: fs.ModeDir | 0o755},
		"etc/shadow": {Data: []byte("root:*:"), Mode: 0o640},
	}
	old := fstree.New()
	if err := old.AddFile("etc/shadow", nil, 0o640, "base-passwd"); err != nil {
		t.Fatal(err)
	}
	got, err := readTar(old, bytes.NewReader(tarOf(t, m, map[string][2]int{"srv/state": {105, 107}, "etc/shadow": {0, 42}})))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		mode     fs.FileMode
		uid, gid int
		origin   string
	}{
		{"srv/state", fs.ModeSetuid | 0o750, 105, 107, "dpkg:configure"},
		{"srv", fs.ModeDir | 0o750, 0, 0, "dpkg:configure"},
		{"tmp2", fs.ModeDir | fs.ModeSticky | 0o777, 0, 0, "dpkg:configure"},
		{"etc/shadow", 0o640, 0, 42, "base-passwd"},
		{"bin/sh", fs.ModeSymlink | 0o777, 0, 0, "dpkg:configure"},
	} {
		n := got.Get(c.path)
		if n == nil || n.Mode != c.mode || n.UID != c.uid || n.GID != c.gid || n.Origin != c.origin {
			t.Errorf("%s: %+v, want mode %v owner %d:%d origin %s", c.path, n, c.mode, c.uid, c.gid, c.origin)
		}
	}
	if n := got.Get("bin/sh"); n == nil || n.Target != "dash" {
		t.Errorf("bin/sh: %+v", n)
	}
}

func FuzzReadTar(f *testing.F) {
	f.Add(tarOf(f, fstest.MapFS{"a": {Data: []byte("x"), Mode: 0o4755}, "d": {Mode: fs.ModeDir | 0o700}}, nil))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		old := fstree.New()
		old.Limits = fstree.Limits{File: 1 << 20, Total: 4 << 20, Entries: 1000}
		tr, err := readTar(old, bytes.NewReader(b))
		if err == nil && (tr.Size() > 4<<20 || tr.Len() > 1000) {
			t.Errorf("tree past its limits: %d bytes, %d entries", tr.Size(), tr.Len())
		}
	})
}
