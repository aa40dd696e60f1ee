package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kilnproject/kiln/internal/progress"
)

// Item is one file to fetch: where it may be downloaded from (tried in order), its size and
// SHA-256.
type Item struct {
	Name   string // for messages, e.g. "libssl3 3.0.11-1~deb12u2"
	URLs   []string
	Size   int64
	SHA256 string
}

// Fetcher downloads files into a content-addressed cache: <Cache>/sha256/<hex>.
type Fetcher struct {
	Cache    string
	HTTP     *http.Client  // nil: a client with timeouts
	Jobs     int           // parallel downloads; 0 means 4
	Idle     time.Duration // a download receiving nothing this long is abandoned (resumable); 0: 60 s
	Progress progress.Func
}

// Path is where the file with the given SHA-256 lives in the cache.
func (f *Fetcher) Path(sum string) string { return filepath.Join(f.Cache, "sha256", sum) }

// Items returns the fetch list of resolved packages, from the mirrors they were indexed from.
func Items(pkgs []*Package) []Item {
	out := make([]Item, len(pkgs))
	for i, p := range pkgs {
		out[i] = Item{Name: p.Name + " " + p.Version, URLs: []string{p.Origin.URI + "/" + p.Filename}, Size: p.Size, SHA256: p.SHA256}
	}
	return out
}

// Fetch makes sure every item is in the cache and returns their paths in order. Files already
// cached are not downloaded again (a warm cache needs no network); a partial download left by
// an interrupted run (<hex>.part) is resumed with an HTTP Range request. Every file is checked
// against its size and SHA-256 before it enters the cache.
func (f *Fetcher) Fetch(ctx context.Context, items []Item) ([]string, error) {
	dir := filepath.Join(f.Cache, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	paths := make([]string, len(items))
	var todo []Item
	var total int64
	seen := map[string]bool{}
	for i, it := range items {
		if !isSHA256(it.SHA256) || it.Size < 0 {
			return nil, fmt.Errorf("fetch %s: bad sha256 or size", it.Name)
		}
		paths[i] = f.Path(it.SHA256)
		if seen[it.SHA256] {
			continue
		}
		seen[it.SHA256] = true
		if st, err := os.Stat(paths[i]); err == nil && st.Size() == it.Size {
			continue
		}
		todo = append(todo, it)
		total += it.Size
	}
	if len(todo) == 0 {
		return paths, nil
	}
	jobs := f.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	var done atomic.Int64
	report := func(n int64) {
		f.Progress.Report(progress.Event{Phase: "download", Done: done.Add(n), Total: total})
	}
	report(0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, it := range todo {
		g.Go(func() error {
			var err error
			for _, u := range it.URLs {
				if err = f.fetchOne(gctx, it, u, report); err == nil || gctx.Err() != nil {
					break
				}
			}
			if err != nil {
				return fmt.Errorf("fetch %s: %w", it.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return paths, nil
}

func (f *Fetcher) fetchOne(ctx context.Context, it Item, url string, report func(int64)) error {
	final := f.Path(it.SHA256)
	part := final + ".part"
	pf, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer pf.Close()
	h := sha256.New()
	have, err := io.Copy(h, pf) // hash what an earlier run left
	if err != nil {
		return err
	}
	if have > it.Size {
		if err := restart(pf, &h); err != nil {
			return err
		}
		have = 0
	}
	report(have)
	if have < it.Size {
		ctx, wd := watch(ctx, f.Idle)
		defer wd.Stop()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		client := f.HTTP
		if client == nil {
			client = defaultHTTP
		}
		resp, err := client.Do(req)
		if err != nil {
			return wd.Err(err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server ignored the range: start over
				report(-have)
				if err := restart(pf, &h); err != nil {
					return err
				}
				have = 0
			}
		default:
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		w := &countingWriter{w: io.MultiWriter(pf, h), report: report}
		n, err := io.Copy(w, io.LimitReader(wd.Reader(resp.Body), it.Size-have+1))
		have += n
		if err != nil {
			return fmt.Errorf("GET %s: %w after %d of %d bytes (run again to resume)", url, err, have, it.Size)
		}
	}
	if have != it.Size || hex.EncodeToString(h.Sum(nil)) != it.SHA256 {
		pf.Close()
		os.Remove(part)
		return fmt.Errorf("%s: %w (got %d bytes, want %d)", url, ErrHashMismatch, have, it.Size)
	}
	if err := pf.Sync(); err != nil {
		return err
	}
	if err := pf.Close(); err != nil {
		return err
	}
	return os.Rename(part, final)
}

func restart(f *os.File, h *hash.Hash) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	*h = sha256.New()
	return nil
}

type countingWriter struct {
	w      io.Writer
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.report(int64(n))
	return n, err
}

// errNoSource is returned when a locked package's suite matches no configured source.
var errNoSource = errors.New("no configured source serves this suite")
