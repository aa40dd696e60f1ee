package assembler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kilnproject/kiln/internal/atomicfile"
)

// Root images are cached by the root's id (which covers every file, owner and mode) and
// SOURCE_DATE_EPOCH, so a rebuild of an unchanged root skips the EROFS writer. The cache keeps
// the keepRoots most recently used images.

// rootFormat versions cached root images: change it when the EROFS writer's output changes.
const rootFormat = "kiln-erofs-1"

const keepRoots = 3

type rootMeta struct {
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (b *builder) rootCachePath(id string) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\n%s\n%d\n", rootFormat, id, b.opts.SourceDateEpoch)))
	return filepath.Join(b.opts.Cache, "roots", hex.EncodeToString(h[:16]))
}

// loadRoot returns the cached image of root id, checked against its recorded size and SHA-256;
// false when there is none or it does not check out.
func (b *builder) loadRoot(id string) (*rootImage, bool) {
	base := b.rootCachePath(id)
	mb, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, false
	}
	var m rootMeta
	if json.Unmarshal(mb, &m) != nil || m.Format != rootFormat || m.Size <= 0 || m.Size > b.r.Board.Layout().DiskSize {
		return nil, false
	}
	st, err := os.Stat(base + ".erofs")
	if err != nil || st.Size() != m.Size {
		return nil, false
	}
	data, err := os.ReadFile(base + ".erofs")
	if err != nil {
		return nil, false
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != m.SHA256 {
		b.log.WithField("file", base+".erofs").Warn("cached root filesystem damaged: building it again")
		return nil, false
	}
	now := time.Now()
	os.Chtimes(base+".json", now, now) // most recently used
	return &rootImage{data: data, id: id, sha256: m.SHA256}, true
}

// saveRoot caches img and removes all but the keepRoots most recently used images. A failure
// only costs the next build time: it is logged.
func (b *builder) saveRoot(img *rootImage) {
	base := b.rootCachePath(img.id)
	err := os.MkdirAll(filepath.Dir(base), 0o755)
	if err == nil {
		err = atomicfile.Write(base+".erofs", img.data, 0o644)
	}
	if err == nil {
		mb, _ := json.Marshal(rootMeta{Format: rootFormat, Size: int64(len(img.data)), SHA256: img.sha256})
		err = atomicfile.Write(base+".json", mb, 0o644)
	}
	if err != nil {
		b.log.WithError(err).Warn("root filesystem not cached")
		return
	}
	pruneRoots(filepath.Dir(base), keepRoots)
}

// pruneRoots removes the cached root images in dir but the keep most recently used.
func pruneRoots(dir string, keep int) {
	metas, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	mtime := func(p string) time.Time {
		st, err := os.Stat(p)
		if err != nil {
			return time.Time{}
		}
		return st.ModTime()
	}
	sort.Slice(metas, func(i, j int) bool { return mtime(metas[i]).After(mtime(metas[j])) })
	for i := keep; i < len(metas); i++ {
		base := metas[i][:len(metas[i])-len(".json")]
		os.Remove(base + ".json")
		os.Remove(base + ".erofs")
	}
}
