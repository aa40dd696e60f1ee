package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
)

// atomicWrite replaces a repository file with data.
func atomicWrite(path string, data []byte) error { return atomicfile.Write(path, data, 0o644) }

// copyInto copies src to dst (temp file, fsync, rename) unless dst exists: payload names are
// content addressed, so an existing file already holds these bytes.
func copyInto(ctx context.Context, dst, src string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	return copyFile(ctx, dst, src)
}

func hashFile(ctx context.Context, path string, pf progress.Func) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, &progress.Reader{R: ctxReader{ctx, f}, Phase: "hash", Total: fi.Size(), F: pf})
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lock takes the repository's lock file (dir/.lock, created exclusively), so that two
// publishers never interleave their metadata. A lock older than an hour is stale.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, ".lock")
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, strconv.Itoa(os.Getpid()))
			f.Close()
			return func() { os.Remove(p) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(p)
			continue
		}
		if attempt >= 50 {
			return nil, fmt.Errorf("lock: %s exists: another publish is running (delete the file if it is not)", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
