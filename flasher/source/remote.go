package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/stall"
)

// ErrDownload is wrapped by the errors of a URL image that could not be downloaded in full.
var ErrDownload = errors.New("download failed")

// Fetch configures how URL images are downloaded. The zero value uses http.DefaultClient, cuts a
// connection that delivers less than 16 KiB in 30 s and resumes a broken download up to 8 times
// in a row.
type Fetch struct {
	Client *http.Client
	// Stall is how long a connection may take to deliver 16 KiB before it is cut and resumed.
	Stall time.Duration
	// Retries bounds the reconnections in a row that deliver nothing new.
	Retries int
	// CacheDir, when set, keeps a copy of the download named by its sha256 (see Image.Keep).
	CacheDir string
}

const (
	headCache   = 64 << 10 // the first bytes, kept from the probe
	tailCache   = 64 << 10 // the last bytes (xz index, zip directory, gzip trailer)
	maxStreams  = 8        // open connections kept for reads that continue where one stopped
	probeBudget = 32       // range requests a probe may make outside the caches
	// stallMin is what a connection must deliver per Fetch.Stall (30 s: about 0.5 kB/s), so a
	// server dripping bytes is cut and resumed like a silent one.
	stallMin = 16 << 10
)

// IsURL reports whether name is an http or https URL.
func IsURL(name string) bool {
	return strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://")
}

// remote is an io.ReaderAt over an HTTP resource. Reads that continue where an earlier one stopped
// reuse its connection, so a sequential reader downloads the file in one request; a connection
// that breaks or stalls is resumed with a Range request from where it stopped. The bytes are
// hashed (and copied to the download cache) in file order as they are first read.
type remote struct {
	url       string
	client    *http.Client
	stallTime time.Duration
	retries   int
	size      int64
	ranges    bool   // the server answers Range requests
	validator string // ETag or Last-Modified, sent as If-Range
	head      []byte
	tail      []byte // the last len(tail) bytes, when ranges

	ctxMu sync.Mutex
	ctx   context.Context

	mu      sync.Mutex
	streams []*stream // idle connections by position
	sum     hash.Hash
	hashed  int64  // bytes of [0, hashed) are in sum
	last    []byte // the last bytes hashed (a trailer read after the end of a stream)
	tee     *atomicfile.File
	teeErr  error
	budget  int // range requests left, when limited (probes); <0: unlimited
	cache   string
	fetched atomic.Int64 // bytes received from the network
}

type stream struct {
	body   io.ReadCloser
	r      io.Reader
	wd     *stall.Watchdog
	pos    int64
	cancel context.CancelFunc
}

func (s *stream) close() {
	s.body.Close()
	s.wd.Stop()
	s.cancel()
}

// probeRemote opens url and reads its first bytes and, when the server answers Range requests,
// its last ones.
func probeRemote(ctx context.Context, rawURL string, f Fetch) (*remote, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("open image %s: not an http(s) URL", rawURL)
	}
	r := &remote{url: rawURL, client: f.Client, stallTime: f.Stall, retries: f.Retries, size: -1,
		sum: sha256.New(), ctx: ctx, budget: -1, cache: f.CacheDir}
	if r.client == nil {
		r.client = http.DefaultClient
	}
	if r.stallTime <= 0 {
		r.stallTime = 30 * time.Second
	}
	if r.retries <= 0 {
		r.retries = 8
	}
	var s *stream
	for failures := 1; ; failures++ {
		if s, err = r.open(0); err == nil {
			break
		}
		if ctx.Err() != nil || failures > r.retries || !retryable(err) {
			return nil, err
		}
		r.pause(failures)
	}
	r.put(s)
	head := make([]byte, min(headCache, r.size))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		r.release()
		return nil, err
	}
	r.head = head
	if r.ranges && r.size > int64(len(r.head)) {
		n := min(tailCache, r.size-int64(len(r.head)))
		tail := make([]byte, n)
		if _, err := r.ReadAt(tail, r.size-n); err != nil {
			r.release()
			return nil, err
		}
		r.tail = tail
	}
	return r, nil
}

func (r *remote) setContext(ctx context.Context) {
	r.ctxMu.Lock()
	r.ctx = ctx
	r.ctxMu.Unlock()
}

func (r *remote) context() context.Context {
	r.ctxMu.Lock()
	defer r.ctxMu.Unlock()
	return r.ctx
}

// fail describes a download error at byte off.
func (r *remote) fail(off int64, err error) error {
	return fmt.Errorf("download %s at byte %d: %w: %w", r.url, off, ErrDownload, err)
}

// open starts a request for the bytes from off. A server that ignores the range sends the whole
// file: its first off bytes are read again and must hash to what was read before.
func (r *remote) open(off int64) (*stream, error) {
	r.mu.Lock()
	if r.budget == 0 {
		r.mu.Unlock()
		return nil, r.fail(off, &refusal{errors.New("too many range requests while probing")})
	}
	if r.budget > 0 {
		r.budget--
	}
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(r.context())
	wctx, wd := stall.Watch(ctx, r.stallTime, stallMin)
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, r.url, nil)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, fmt.Errorf("open image %s: %w", r.url, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	req.Header.Set("Accept-Encoding", "identity")
	if r.validator != "" {
		req.Header.Set("If-Range", r.validator)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, r.fail(off, wd.Err(err))
	}
	s := &stream{body: resp.Body, r: wd.Reader(resp.Body), wd: wd, cancel: cancel}
	bad := func(format string, args ...any) (*stream, error) {
		s.close()
		return nil, r.fail(off, &refusal{fmt.Errorf(format, args...)})
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		switch {
		case !ok:
			return bad("the server sent an unreadable Content-Range %q", resp.Header.Get("Content-Range"))
		case start != off:
			return bad("asked for the bytes from %d, the server sent them from %d", off, start)
		case r.size >= 0 && total != r.size:
			return bad("the file on the server changed size from %d to %d bytes while downloading; start again", r.size, total)
		}
		if r.size < 0 {
			r.size, r.ranges = total, true
			r.validator = validator(resp.Header)
		}
		s.pos = off
		return s, nil
	case http.StatusOK:
		if r.size < 0 {
			if resp.ContentLength < 0 {
				return bad("the server does not say how large the file is; download it first and flash the file")
			}
			r.size = resp.ContentLength
			r.validator = validator(resp.Header)
		} else if resp.ContentLength >= 0 && resp.ContentLength != r.size {
			return bad("the file on the server changed size from %d to %d bytes while downloading; start again", r.size, resp.ContentLength)
		}
		if off == 0 {
			return s, nil
		}
		return r.skip(s, off)
	case http.StatusRequestedRangeNotSatisfiable:
		return bad("the server refused the range from byte %d (%s); the file on it changed — start again", off, resp.Status)
	}
	if resp.StatusCode >= 500 { // worth trying again
		s.close()
		return nil, r.fail(off, fmt.Errorf("the server answered %s", resp.Status))
	}
	return bad("the server answered %s; check the URL", resp.Status)
}

// skip reads the first off bytes of a whole-file answer and checks that they are the bytes read
// before; only a download broken off exactly where the hashed part ends can be resumed this way.
func (r *remote) skip(s *stream, off int64) (*stream, error) {
	r.mu.Lock()
	hashed, want := r.hashed, r.sum.Sum(nil)
	r.mu.Unlock()
	if hashed != off {
		s.close()
		return nil, r.fail(off, &refusal{errors.New("the server ignores HTTP range requests, which this image needs; download it first and flash the file")})
	}
	h := sha256.New()
	n, err := io.CopyN(h, s.r, off)
	r.fetched.Add(n)
	if err != nil {
		s.close()
		return nil, r.fail(off, s.wd.Err(err))
	}
	if string(h.Sum(nil)) != string(want) {
		s.close()
		return nil, r.fail(off, &refusal{errors.New("the server ignores range requests and sent different bytes when asked again: the file changed; start again")})
	}
	s.pos = off
	return s, nil
}

func validator(h http.Header) string {
	if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		return e
	}
	return h.Get("Last-Modified")
}

// parseContentRange reads "bytes START-END/TOTAL".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || total <= end || total > 1<<62 {
		return 0, 0, false
	}
	return start, total, true
}

// take returns an idle connection positioned at off, or nil.
func (r *remote) take(off int64) *stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.streams {
		if s.pos == off {
			r.streams = append(r.streams[:i], r.streams[i+1:]...)
			return s
		}
	}
	return nil
}

// put keeps an idle connection, closing the oldest beyond maxStreams.
func (r *remote) put(s *stream) {
	if s.pos >= r.size {
		s.close()
		return
	}
	r.mu.Lock()
	r.streams = append(r.streams, s)
	var drop *stream
	if len(r.streams) > maxStreams {
		drop, r.streams = r.streams[0], r.streams[1:]
	}
	r.mu.Unlock()
	if drop != nil {
		drop.close()
	}
}

// release closes the idle connections.
func (r *remote) release() {
	r.mu.Lock()
	ss := r.streams
	r.streams = nil
	r.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
}

// cached copies what the caches hold of [off, off+len(p)) from its start.
func (r *remote) cached(p []byte, off int64) int {
	if off < int64(len(r.head)) {
		return copy(p, r.head[off:])
	}
	if t := r.size - int64(len(r.tail)); len(r.tail) > 0 && off >= t {
		return copy(p, r.tail[off-t:])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.hashed - int64(len(r.last)); off >= l && off < r.hashed {
		return copy(p, r.last[off-l:])
	}
	return 0
}

// ReadAt reads from the caches or a connection, resuming a broken one.
func (r *remote) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("download %s: negative offset", r.url)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > r.size-off {
		p, eof = p[:r.size-off], io.EOF
	}
	done := 0
	var s *stream
	defer func() {
		if s != nil {
			r.put(s)
		}
	}()
	failures := 0
	for done < len(p) {
		pos := off + int64(done)
		if k := r.cached(p[done:], pos); k > 0 {
			r.consume(pos, p[done:done+k])
			done += k
			continue
		}
		if s == nil || s.pos != pos {
			if s != nil {
				r.put(s)
			}
			if s = r.take(pos); s == nil {
				var err error
				if s, err = r.open(pos); err != nil {
					if ctx := r.context(); ctx.Err() != nil {
						return done, context.Cause(ctx)
					}
					failures++
					if failures > r.retries || !retryable(err) {
						return done, err
					}
					r.pause(failures)
					continue
				}
			}
		}
		// Read up to the next cached range, so the cache serves it.
		want := p[done:]
		if len(r.tail) > 0 {
			if t := r.size - int64(len(r.tail)); pos < t && pos+int64(len(want)) > t {
				want = want[:t-pos]
			}
		}
		k, err := io.ReadFull(s.r, want)
		r.fetched.Add(int64(k))
		r.consume(pos, want[:k])
		s.pos += int64(k)
		done += k
		if k > 0 {
			failures = 0
		}
		if err != nil {
			err = s.wd.Err(err)
			s.close()
			s = nil
			if ctx := r.context(); ctx.Err() != nil {
				return done, context.Cause(ctx)
			}
			if done < len(p) {
				failures++
				if failures > r.retries {
					return done, r.fail(off+int64(done), fmt.Errorf("%d attempts in a row failed: %w", failures, err))
				}
				r.pause(failures)
			}
		}
	}
	return done, eof
}

// refusal is an answer that asking again will not change.
type refusal struct{ error }

func (e *refusal) Unwrap() error { return e.error }

// retryable tells a broken connection (worth resuming) from a refusal.
func retryable(err error) bool {
	var r *refusal
	return !errors.As(err, &r)
}

func (r *remote) pause(failures int) {
	d := min(time.Duration(failures)*200*time.Millisecond, 2*time.Second)
	select {
	case <-time.After(d):
	case <-r.context().Done():
	}
}

// consume hashes (and keeps a copy of) p, the bytes at off, when they continue the hashed part.
func (r *remote) consume(off int64, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off > r.hashed || off+int64(len(p)) <= r.hashed {
		return
	}
	p = p[r.hashed-off:]
	r.sum.Write(p)
	if r.tee != nil && r.teeErr == nil {
		_, r.teeErr = r.tee.Write(p)
	}
	r.hashed += int64(len(p))
	const keep = 64
	r.last = append(r.last, p[max(0, len(p)-keep):]...)
	r.last = r.last[max(0, len(r.last)-keep):]
}

// downloadSum completes the hash of the whole file, reading the parts no reader has read in
// order, and returns it.
func (r *remote) downloadSum(ctx context.Context) (string, error) {
	r.setContext(ctx)
	buf := make([]byte, 1<<20)
	for {
		r.mu.Lock()
		hashed := r.hashed
		r.mu.Unlock()
		if hashed >= r.size {
			break
		}
		n := min(int64(len(buf)), r.size-hashed)
		if _, err := r.ReadAt(buf[:n], hashed); err != nil && err != io.EOF {
			return "", err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return hex.EncodeToString(r.sum.Sum(nil)), nil
}

// startCache begins copying the download into the cache directory.
func (r *remote) startCache() error {
	if r.cache == "" {
		return nil
	}
	if err := os.MkdirAll(r.cache, 0o755); err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hashed != int64(len(r.head)) || r.tee != nil {
		return nil
	}
	f, err := atomicfile.Create(filepath.Join(r.cache, "download"), 0o644)
	if err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	if _, err := f.Write(r.head); err != nil {
		f.Abort()
		return fmt.Errorf("download cache: %w", err)
	}
	r.tee = f
	return nil
}

// keep stores the complete download in the cache under its sha256.
func (r *remote) keep(sum string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tee == nil {
		return nil
	}
	f := r.tee
	r.tee = nil
	if r.teeErr != nil || r.hashed != r.size {
		f.Abort()
		return r.teeErr
	}
	if err := f.CommitAs(sum); err != nil {
		f.Abort()
		return fmt.Errorf("download cache: %w", err)
	}
	return nil
}

func (r *remote) dropCache() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tee != nil {
		r.tee.Abort()
		r.tee = nil
	}
}

// IsRemote reports whether the image is downloaded from a URL.
func (im *Image) IsRemote() bool { return im.remote != nil }

// Downloaded returns the bytes received from the network so far (resumed and repeated requests
// included) and the download's size; both are 0 for a local file.
func (im *Image) Downloaded() (done, total int64) {
	if im.remote == nil {
		return 0, 0
	}
	return im.remote.fetched.Load(), im.remote.size
}

// DownloadSHA256 returns the sha256 of the file as stored (compressed): for a URL image, of the
// bytes downloaded, fetching what the decoder did not read (such as padding after the data); for
// a local file, of the file.
func (im *Image) DownloadSHA256(ctx context.Context) (string, error) {
	if im.remote != nil {
		return im.remote.downloadSum(ctx)
	}
	f, err := os.Open(im.Path)
	if err != nil {
		return "", fmt.Errorf("sha256 of %s: %w", im.Path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, readerCtx{ctx, f}); err != nil {
		return "", fmt.Errorf("sha256 of %s: %w", im.Path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// CacheDownload starts copying a URL image's download into Fetch.CacheDir as it is read; Keep
// stores it there once its checksum is confirmed.
func (im *Image) CacheDownload() error {
	if im.remote == nil {
		return nil
	}
	return im.remote.startCache()
}

// Keep stores the complete download in the cache as CacheDir/SUM; sum must be the download's
// sha256 confirmed against a published one. Without a complete copy it does nothing.
func (im *Image) Keep(sum string) error {
	if im.remote == nil {
		return nil
	}
	return im.remote.keep(sum)
}

// Release closes a URL image's idle connections and drops an unconfirmed cache copy.
func (im *Image) Release() {
	if im.remote != nil {
		im.remote.release()
		im.remote.dropCache()
	}
}
