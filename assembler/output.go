package assembler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/workdir"
	"github.com/kilnproject/kiln/ota"
)

// ErrOutDirInUse: the output directory exists and holds something other than a previous build.
var ErrOutDirInUse = errors.New("output directory holds other files")

// stage is a temporary directory next to the output directory: a build writes into it and renames
// it into place at the end, so an interrupted or failed build leaves no partial output behind and a
// successful one replaces the previous build at once.
type stage struct {
	out, dir string
}

func newStage(out, imageName string) (*stage, error) {
	out = filepath.Clean(out)
	if err := checkOutDir(out, imageName); err != nil {
		return nil, err
	}
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory %s: %w", parent, err)
	}
	// A build killed outright leaves its directory behind: remove those of ended processes.
	prefix := "." + filepath.Base(out) + ".build-"
	workdir.Sweep(parent, prefix)
	dir, err := workdir.New(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("create build directory in %s: %w", parent, err)
	}
	// MkdirTemp makes 0700 directories; the output is an ordinary directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create build directory in %s: %w", parent, err)
	}
	return &stage{out: out, dir: dir}, nil
}

// checkOutDir refuses to replace a directory Kiln did not write, so a mistyped --out never deletes
// a user's files. It accepts a directory that does not exist, an empty one, and a previous build's
// output: a directory holding Kiln's manifest.json and nothing a build does not write.
func checkOutDir(out, imageName string) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output directory %s: %w", out, err)
	}
	if len(entries) == 0 {
		return nil
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s; choose another output directory, or move its contents away", ErrOutDirInUse,
			out, fmt.Sprintf(format, args...))
	}
	m, merr := LoadManifest(filepath.Join(out, "manifest.json"))
	written := map[string]bool{"manifest.json": true, "update": true, imageName: true, imageName + ".bmap": true}
	written[SBOMName(strings.TrimSuffix(imageName, ".img"))] = true
	if merr == nil {
		written[filepath.Base(m.Image.File)], written[filepath.Base(m.Image.Bmap)] = true, true
		if m.ISO != nil {
			written[filepath.Base(m.ISO.File)], written[filepath.Base(m.ISO.Bmap)] = true, true
		}
	}
	for _, e := range entries {
		if !written[e.Name()] {
			return refuse("contains %s, which a build did not write", e.Name())
		}
	}
	if merr != nil || m.Format < 1 || m.Kiln == "" {
		return refuse("holds no manifest.json of a previous build, so Kiln did not write it")
	}
	// The update bundle: update.json, the unified kernel images and root images, nothing else.
	upd := filepath.Join(out, "update")
	if fi, err := os.Lstat(upd); err == nil && !fi.IsDir() {
		return refuse("contains update, which is not the directory a build writes")
	}
	bundle, err := os.ReadDir(upd)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("output directory %s: %w", out, err)
	}
	for _, e := range bundle {
		if n := e.Name(); !e.Type().IsRegular() || (n != ota.BundleFile && filepath.Ext(n) != ".efi" && filepath.Ext(n) != ".root") {
			return refuse("contains update/%s, which a build did not write", n)
		}
	}
	return nil
}

func (s *stage) path(name string) string { return filepath.Join(s.dir, name) }

// commit moves the finished build into place, replacing a previous build's output.
func (s *stage) commit() error {
	old := ""
	if _, err := os.Stat(s.out); err == nil {
		old = s.dir + ".old"
		if err := os.Rename(s.out, old); err != nil {
			return fmt.Errorf("replace %s: %w", s.out, err)
		}
	}
	if err := os.Rename(s.dir, s.out); err != nil {
		if old != "" {
			os.Rename(old, s.out)
		}
		return fmt.Errorf("move build into %s: %w", s.out, err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove previous build %s: %w", old, err)
		}
	}
	return nil
}

// abort removes the build directory.
func (s *stage) abort() { os.RemoveAll(s.dir) }

// hashRanges computes the sha256 of the whole file and of each [off, off+size) range in one read
// pass, reading in large blocks and feeding the hashes concurrently. Blocks outside the data
// extents (nil: all of the file is data) are holes and not read; runs of zeros go through memo.
func hashRanges(ctx context.Context, path string, ranges, data [][2]int64, memo *zeroMemo, prog progress.Func) (string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", nil, fmt.Errorf("hash %s: %w", path, err)
	}
	if memo == nil {
		memo = loadZeroMemo("")
	}
	size := st.Size()
	whole := newZeroHasher(memo)
	parts := make([]*zeroHasher, len(ranges))
	for i := range parts {
		parts[i] = newZeroHasher(memo)
	}
	const block, chunk = 4 << 20, 1 << 20
	bufs := [2][]byte{make([]byte, block), make([]byte, block)}
	zero := make([]bool, block/chunk)
	for off, i := int64(0), 0; off < size; off, i = off+block, i^1 {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		buf := bufs[i][:min(block, size-off)]
		if data != nil && !overlaps(data, off, off+int64(len(buf))) {
			clear(buf) // a hole: zeros, not read
		} else if _, err := io.ReadFull(io.NewSectionReader(f, off, int64(len(buf))), buf); err != nil {
			return "", nil, fmt.Errorf("hash %s: %w", path, err)
		}
		for c := range zero {
			lo := min(c*chunk, len(buf))
			zero[c] = allZero(buf[lo:min(lo+chunk, len(buf))])
		}
		// feed writes [lo, hi) of the file to h, chunk by chunk, telling it which are zeros.
		feed := func(h *zeroHasher, lo, hi int64) {
			for lo < hi {
				c := (lo - off) / chunk
				end := min(hi, off+(c+1)*chunk)
				h.write(buf[lo-off:end-off], zero[c])
				lo = end
			}
		}
		var wg sync.WaitGroup
		wg.Go(func() { feed(whole, off, off+int64(len(buf))) })
		for j, r := range ranges {
			lo, hi := max(off, r[0]), min(off+int64(len(buf)), r[0]+r[1])
			if lo < hi {
				wg.Go(func() { feed(parts[j], lo, hi) })
			}
		}
		wg.Wait()
		prog.Report(progress.Event{Phase: "hash", Done: off + int64(len(buf)), Total: size})
	}
	sums := make([]string, len(parts))
	for i, h := range parts {
		sums[i] = h.sum()
	}
	return whole.sum(), sums, nil
}

// overlaps reports whether any [start, end) extent meets [lo, hi).
func overlaps(extents [][2]int64, lo, hi int64) bool {
	for _, e := range extents {
		if e[0] < hi && lo < e[1] {
			return true
		}
	}
	return false
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
