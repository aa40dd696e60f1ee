package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkRealResolve compares, on the same lists (the host's bookworm sources, fetched by
// apt-get update into a scratch root), Kiln's parse of every Packages index plus the resolve of
// realRequest with apt-get install --simulate of the same request on an empty system.
func BenchmarkRealResolve(b *testing.B) {
	root := newAptRoot(b, hostBookworm(b))
	root.run(b, "update", "-q")
	lists, _ := filepath.Glob(filepath.Join(root.dir, "lists", "*_Packages"))
	if len(lists) == 0 {
		b.Fatal("apt-get update left no uncompressed Packages lists")
	}
	load := func(b *testing.B) *Archive {
		a := NewArchive("amd64")
		for _, l := range lists {
			f, err := os.Open(l)
			if err != nil {
				b.Fatal(err)
			}
			suite := filepath.Base(l)
			if i := strings.Index(suite, "_dists_"); i >= 0 {
				suite = strings.SplitN(suite[i+len("_dists_"):], "_", 2)[0]
			}
			err = a.Add(&Origin{Suite: suite, Component: "main", Priority: 500}, f)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		return a
	}
	b.Run("kiln-parse", func(b *testing.B) {
		for b.Loop() {
			load(b)
		}
	})
	b.Run("kiln-parse+resolve", func(b *testing.B) {
		for b.Loop() {
			if _, err := load(b).Resolve(realRequest, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("apt-get-simulate", func(b *testing.B) {
		root.simulate(b, realRequest) // apt builds its package cache on the first run; not timed
		b.ResetTimer()
		for b.Loop() {
			root.simulate(b, realRequest)
		}
	})
}
