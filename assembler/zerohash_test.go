package assembler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestHashRangesZeroMemo checks that hashing with remembered runs of zeros gives the plain
// SHA-256 of the file and of its ranges: with an empty memo, a warm one read back from the cache,
// a damaged one, with holes skipped, and after the data in a run changed.
func TestHashRangesZeroMemo(t *testing.T) {
	const size = 21<<20 + 12345
	data := make([]byte, size)
	rng := rand.New(rand.NewSource(1))
	put := func(off, n int) { rng.Read(data[off : off+n]) }
	put(0, 5000)
	put(3<<20+17, 100)
	put(9<<20, 2<<20)
	put(size-300, 300)
	file := filepath.Join(t.TempDir(), "img")
	write := func() {
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	ranges := [][2]int64{{1 << 20, 8 << 20}, {9 << 20, size - 9<<20}}
	want := func() (string, []string) {
		w := sha256.Sum256(data)
		var parts []string
		for _, r := range ranges {
			s := sha256.Sum256(data[r[0] : r[0]+r[1]])
			parts = append(parts, hex.EncodeToString(s[:]))
		}
		return hex.EncodeToString(w[:]), parts
	}
	cache := t.TempDir()
	check := func(name string, extents [][2]int64) {
		t.Helper()
		memo := loadZeroMemo(cache)
		whole, parts, err := hashRanges(context.Background(), file, ranges, extents, memo, nil)
		if err != nil {
			t.Fatal(err)
		}
		memo.save()
		ww, wp := want()
		if whole != ww || parts[0] != wp[0] || parts[1] != wp[1] {
			t.Errorf("%s: got %s %v, want %s %v", name, whole, parts, ww, wp)
		}
	}
	check("cold", nil)
	if memo := loadZeroMemo(cache); len(memo.entries) == 0 {
		t.Fatal("no zero runs remembered")
	}
	check("warm", nil)
	// Only the first 4 MiB block and the data at 9 MiB are data extents; the rest are holes.
	check("holes skipped", [][2]int64{{0, 4 << 20}, {9 << 20, 11 << 20}, {size - 300, size}})
	// Damage every remembered state: the records fail their check and are computed again.
	memoFile := filepath.Join(cache, "hashes", "zero-runs.json")
	b, err := os.ReadFile(memoFile)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		if b[i] == 'a' {
			b[i] = 'b'
		}
	}
	os.WriteFile(memoFile, b, 0o644)
	check("damaged memo", nil)
	os.WriteFile(memoFile, []byte("not json"), 0o644)
	check("garbage memo", nil)
	// New data inside a former run of zeros.
	put(15<<20, 10)
	write()
	check("changed", nil)
}
