package fstree

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAddTarball reads arbitrary bytes as an overlay tarball into a tree with limits. Whatever the
// headers claim, the tree stays within the limits, holds only clean paths, symlinks that stay
// inside the root and no device nodes, and a refusal is an error, never a panic.
func FuzzAddTarball(f *testing.F) {
	seed := func(hs ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			body := make([]byte, h.Size)
			tw.WriteHeader(&h)
			tw.Write(body)
		}
		tw.Close()
		return buf.Bytes()
	}
	f.Add(seed(tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6},
		tar.Header{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "motd"},
		tar.Header{Name: "etc/hard", Typeflag: tar.TypeLink, Linkname: "etc/motd"}))
	f.Add(seed(tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(seed(tar.Header{Name: "a/b", Typeflag: tar.TypeSymlink, Linkname: "../../x"}))
	f.Add(seed(tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Devmajor: 8}))
	f.Add(seed(tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "missing"}))
	limits := Limits{File: 1 << 20, Total: 4 << 20, Entries: 1000}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "in.tar")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tr := New()
		tr.Replace, tr.Limits = true, limits
		err := tr.AddTarball(p, "", "fuzz")
		var ee *EntryError
		if errors.As(err, &ee) && ee.Err == nil {
			t.Fatalf("entry error without a reason class: %v", err)
		}
		if tr.Size() > limits.Total || tr.Len() > limits.Entries {
			t.Fatalf("tree of %d bytes in %d entries beyond %+v", tr.Size(), tr.Len(), limits)
		}
		for _, n := range tr.Sorted() {
			if c, err := CleanPath(n.Path); err != nil || c != n.Path {
				t.Fatalf("node path %q is not clean", n.Path)
			}
			if int64(len(n.Data)) > limits.File {
				t.Fatalf("%s holds %d bytes", n.Path, len(n.Data))
			}
			if n.IsSymlink() {
				if err := checkTarget(n.Path, n.Target); err != nil {
					t.Fatalf("symlink %s → %s: %v", n.Path, n.Target, err)
				}
			}
			if n.Mode&os.ModeDevice != 0 {
				t.Fatalf("device node %s without AllowDevices", n.Path)
			}
		}
	})
}
