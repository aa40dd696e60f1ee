package assembler

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"hash"
	"os"
	"path/filepath"
	"sync"

	"github.com/kilnproject/kiln/internal/atomicfile"
)

// Most of a disk image is zeros (the free space of its partitions). Hashing them is most of a warm
// rebuild's time, and it gives the same result every time: from the same SHA-256 state, the same
// number of zero bytes always lead to the same next state. zeroMemo remembers these transitions
// across builds, so a rebuild hashes only the blocks that hold data and looks the runs of zeros
// up. The result is the plain SHA-256 of the file, whatever the memo holds: an entry is used only
// when its record checks out, and a missing or damaged one is computed again.
type zeroMemo struct {
	file string // "": remember only in memory

	mu      sync.Mutex
	entries map[string]string // hex(sha256(state, run length)) → hex(state after the run)
	dirty   bool
}

// maxZeroMemo bounds the memo's entries (a build adds a few per hashed range).
const maxZeroMemo = 4096

type zeroRecord struct {
	Key, After, Check string
}

func loadZeroMemo(cache string) *zeroMemo {
	z := &zeroMemo{entries: map[string]string{}}
	if cache == "" {
		return z
	}
	z.file = filepath.Join(cache, "hashes", "zero-runs.json")
	data, err := os.ReadFile(z.file)
	if err != nil || len(data) > 4<<20 {
		return z
	}
	var recs []zeroRecord
	if json.Unmarshal(data, &recs) != nil {
		return z
	}
	for _, r := range recs {
		if r.Check == recordCheck(r.Key, r.After) {
			z.entries[r.Key] = r.After
		}
	}
	return z
}

func recordCheck(key, after string) string {
	s := sha256.Sum256([]byte(key + "\x00" + after))
	return hex.EncodeToString(s[:8])
}

// save writes the memo back when it learnt something; failing to is not an error (it is a cache).
func (z *zeroMemo) save() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if !z.dirty || z.file == "" {
		return
	}
	recs := make([]zeroRecord, 0, len(z.entries))
	for k, v := range z.entries {
		recs = append(recs, zeroRecord{Key: k, After: v, Check: recordCheck(k, v)})
	}
	data, err := json.Marshal(recs)
	if err != nil || os.MkdirAll(filepath.Dir(z.file), 0o755) != nil {
		return
	}
	if atomicfile.Write(z.file, data, 0o644) == nil {
		z.dirty = false
	}
}

func zeroKey(state []byte, n int64) string {
	h := sha256.New()
	h.Write(state)
	h.Write([]byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return hex.EncodeToString(h.Sum(nil))
}

// zeroHasher is a SHA-256 that holds back runs of zero blocks and hashes them through the memo.
type zeroHasher struct {
	h       hash.Hash
	memo    *zeroMemo
	pending int64  // zero bytes held back
	before  []byte // the state before them
}

func newZeroHasher(memo *zeroMemo) *zeroHasher { return &zeroHasher{h: sha256.New(), memo: memo} }

// write hashes p; zero says p holds only zero bytes.
func (z *zeroHasher) write(p []byte, zero bool) {
	if zero {
		if z.pending == 0 {
			st, err := z.h.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				z.h.Write(p)
				return
			}
			z.before = st
		}
		z.pending += int64(len(p))
		return
	}
	z.flush()
	z.h.Write(p)
}

var zeroBlock = make([]byte, 1<<20)

// flush hashes the held-back zeros: a remembered transition, else computed and remembered.
func (z *zeroHasher) flush() {
	n := z.pending
	if n == 0 {
		return
	}
	z.pending = 0
	key := zeroKey(z.before, n)
	z.memo.mu.Lock()
	after, ok := z.memo.entries[key]
	z.memo.mu.Unlock()
	if ok {
		if st, err := hex.DecodeString(after); err == nil && z.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st) == nil {
			return
		}
		// Unusable: start again from the state before the run.
		if z.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(z.before) != nil {
			panic("sha256: cannot restore its own state")
		}
	}
	for left := n; left > 0; {
		k := min(left, int64(len(zeroBlock)))
		z.h.Write(zeroBlock[:k])
		left -= k
	}
	st, err := z.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return
	}
	z.memo.mu.Lock()
	if len(z.memo.entries) >= maxZeroMemo {
		z.memo.entries = map[string]string{}
	}
	z.memo.entries[key] = hex.EncodeToString(st)
	z.memo.dirty = true
	z.memo.mu.Unlock()
}

// sum returns the hex digest.
func (z *zeroHasher) sum() string {
	z.flush()
	return hex.EncodeToString(z.h.Sum(nil))
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= len(zeroBlock) {
		if !bytes.Equal(b[:len(zeroBlock)], zeroBlock) {
			return false
		}
		b = b[len(zeroBlock):]
	}
	return bytes.Equal(b, zeroBlock[:len(b)])
}
