//go:build linux

package archive

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the user+system CPU time used so far by this process (who =
// RUSAGE_SELF) or by its waited-for children (RUSAGE_CHILDREN). On a shared machine it is a
// steadier measure than wall time.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds a cpu-ms/op metric over the b.Loop iterations.
func reportCPU(b *testing.B, who int, start time.Duration) {
	b.ReportMetric(float64((cpuTime(who)-start).Milliseconds())/float64(b.N), "cpu-ms/op")
}

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
		start := cpuTime(syscall.RUSAGE_SELF)
		for b.Loop() {
			load(b)
		}
		reportCPU(b, syscall.RUSAGE_SELF, start)
	})
	b.Run("kiln-parse+resolve", func(b *testing.B) {
		start := cpuTime(syscall.RUSAGE_SELF)
		for b.Loop() {
			if _, err := load(b).Resolve(realRequest, Options{}); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, syscall.RUSAGE_SELF, start)
	})
	b.Run("apt-get-simulate", func(b *testing.B) {
		root.simulate(b, realRequest) // apt builds its package cache on the first run; not timed
		start := cpuTime(syscall.RUSAGE_CHILDREN)
		for b.Loop() {
			root.simulate(b, realRequest)
		}
		reportCPU(b, syscall.RUSAGE_CHILDREN, start)
	})
}
