package fstree

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testarchive"
)

// A small tarball holding a 1.5 GiB file is refused from its header, before anything is read:
// the tree allocates nothing near the claimed size.
func TestTarballBombRefused(t *testing.T) {
	bomb := filepath.Join(t.TempDir(), "bomb.tar.gz")
	testarchive.TarGzBomb(t, bomb, "big", 3<<29)
	if fi, _ := os.Stat(bomb); fi.Size() > 2<<20 {
		t.Fatalf("the bomb is %d bytes; it should be about 1.5 MB", fi.Size())
	}
	tr := New()
	tr.Limits = Limits{File: 64 << 20, Total: 256 << 20, Entries: 1000}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := tr.AddTarball(bomb, "", "overlay:bomb.tar.gz")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big") {
		t.Fatalf("AddTarball(bomb) = %v, want ErrTooLarge naming the entry", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", alloc>>20)
	}
}

// The limits hold for every way a tree is filled: one file, the total, the number of entries.
func TestLimits(t *testing.T) {
	tarball := func(files map[string]int) string {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for name, size := range files {
			must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}))
			_, err := tw.Write(make([]byte, size))
			must(t, err)
		}
		must(t, tw.Close())
		p := filepath.Join(t.TempDir(), "x.tar")
		must(t, os.WriteFile(p, buf.Bytes(), 0o644))
		return p
	}
	limits := Limits{File: 100, Total: 150, Entries: 5}
	for _, tc := range []struct {
		name  string
		files map[string]int
		want  string
	}{
		{"fits", map[string]int{"a": 100, "b": 50}, ""},
		{"file too large", map[string]int{"a": 101}, "more than the 100"},
		{"total too large", map[string]int{"a": 100, "b": 51}, "exceed the 150"},
		{"too many entries", map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, "more than 5 entries"},
		{"deep path", map[string]int{"1/2/3/4/5": 1}, "more than 5 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, src := range []string{"tar", "dir"} {
				tr := New()
				tr.Limits = limits
				var err error
				if src == "tar" {
					err = tr.AddTarball(tarball(tc.files), "", "t")
				} else {
					dir := t.TempDir()
					for name, size := range tc.files {
						must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
						must(t, os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644))
					}
					err = tr.AddOverlayDir(dir, "", "d")
				}
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s: %v", src, err)
				case tc.want != "" && (!errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("%s: error %v, want ErrTooLarge saying %q", src, err, tc.want)
				}
				if tr.Size() > limits.Total || tr.Len() > limits.Entries {
					t.Errorf("%s: tree holds %d bytes in %d entries, beyond %+v", src, tr.Size(), tr.Len(), limits)
				}
			}
		})
	}
}
