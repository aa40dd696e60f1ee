package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/stall"
	"github.com/kilnproject/kiln/ota"
)

// Client talks to an update server.
type Client struct {
	// BaseURL is the server, e.g. "http://10.0.2.2:8080".
	BaseURL string
	// HTTP is the client to use; nil means one with connect, header and idle timeouts.
	HTTP *http.Client
	// Retries is how many times a download resumes after a cut without progress (default 8).
	Retries int
	// Backoff is the pause before the first resume, doubling up to 30 s (default 1 s).
	Backoff time.Duration
	// Stall and MinRate cut a response body that delivers fewer than MinRate bytes per second
	// over a whole Stall period (defaults DefaultStall, DefaultMinRate); a download then
	// resumes, a stalled attempt counting against Retries.
	Stall   time.Duration
	MinRate int64
	// Key, when set, signs checks and reports (the device's identity key).
	Key ed25519.PrivateKey
	// skew is the server's clock minus ours, learnt when the server refused a timestamp.
	skew time.Duration
}

// NewHTTPClient returns an http.Client with timeouts suited to a LAN update server.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       60 * time.Second,
		MaxIdleConnsPerHost:   2,
	}}
}

func (c *Client) http() *http.Client {
	if c.HTTP == nil {
		c.HTTP = NewHTTPClient()
	}
	return c.HTTP
}

func (c *Client) url(p string) string {
	return strings.TrimRight(c.BaseURL, "/") + "/" + strings.TrimLeft(p, "/")
}

// metadataAttempts is how many times a metadata file is requested when a transfer fails.
const metadataAttempts = 3

// Metadata is a FetchFunc reading /metadata/<name> from the server, trying again after a
// stalled or cut transfer.
func (c *Client) Metadata(ctx context.Context, name string, max int64) ([]byte, error) {
	var err error
	for i := 0; i < metadataAttempts; i++ {
		var data []byte
		data, err = c.metadata(ctx, name, max)
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrTooLong) || ctx.Err() != nil {
			return data, err
		}
	}
	return nil, fmt.Errorf("%w (after %d attempts)", err, metadataAttempts)
}

func (c *Client) metadata(ctx context.Context, name string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ctx, wd := c.watch(ctx)
	defer wd.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("metadata/"+name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, wd.Err(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("get %s: %w", name, ErrNotFound)
	default:
		return nil, fmt.Errorf("get %s: %s", name, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(wd.Reader(resp.Body), max+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("get %s: longer than %d bytes: %w", name, max, ErrTooLong)
	}
	return data, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, path, body)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && c.learnSkew(resp) {
		// The device's clock is off (no RTC, no NTP yet): sign again in the server's time.
		resp.Body.Close()
		resp, err = c.send(ctx, path, body)
	}
	if err != nil {
		return fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict && out == nil {
		// The server has this very request (its nonce): it landed through a retry, e.g. by a
		// load balancer whose first server died before answering.
		return nil
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("post %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("post %s: decode answer: %w", path, err)
	}
	return nil
}

// send posts body to path, signed with c.Key when set.
func (c *Client) send(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Key != nil {
		req.Header.Set(ota.SignatureHeader, ota.SignRequest(c.Key, path, body, time.Now().Add(c.skew), ota.NewNonce()))
	}
	return c.http().Do(req)
}

// learnSkew takes the server's clock from a refusal's Date header; it reports whether that
// differs from the time the request was signed in by enough to explain the refusal.
func (c *Client) learnSkew(resp *http.Response) bool {
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || c.Key == nil {
		return false
	}
	skew := time.Until(date)
	if d := skew - c.skew; d > -ota.SignatureWindow/2 && d < ota.SignatureWindow/2 {
		return false
	}
	c.skew = skew
	return true
}

// Check asks the server which update device d should install.
func (c *Client) Check(ctx context.Context, d ota.Device) (*ota.CheckResponse, error) {
	var resp ota.CheckResponse
	if err := c.post(ctx, "/v1/check", ota.CheckRequest{Device: d}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Report tells the server what the device is doing.
func (c *Client) Report(ctx context.Context, r ota.Report) error {
	return c.post(ctx, "/v1/report", r, nil)
}

// File is what Download writes into: an *os.File, or anything that behaves like one (such as
// a partition whose length is tracked by the caller).
type File interface {
	io.ReadWriteSeeker
	Truncate(size int64) error
	Sync() error
}

// Download fetches target t into f, resuming from what f already holds (after a cut, or a
// restart of the agent) with HTTP Range requests. It checks the signed length and sha256:
// more bytes than signed fail with ErrTooLong, other content with ErrHashMismatch. Memory use
// does not depend on the payload size. On success f holds exactly the payload.
func (c *Client) Download(ctx context.Context, t ota.Target, f File, pf progress.Func) error {
	h := sha256.New()
	// Hash what a previous attempt left behind.
	off, err := f.Seek(0, io.SeekStart)
	if err == nil {
		off, err = io.Copy(h, io.LimitReader(f, t.Size+1))
	}
	if err != nil {
		return fmt.Errorf("download %s: resume: %w", t.Path, err)
	}
	if off > t.Size {
		if err := restart(f, h); err != nil {
			return err
		}
		off = 0
	}
	retries := c.Retries
	if retries == 0 {
		retries = 8
	}
	backoff := c.Backoff
	if backoff == 0 {
		backoff = time.Second
	}
	url := c.url(ota.TargetFile(t.Path, t.SHA256))
	etag := ""
	for failures := 0; off < t.Size || off == 0 && t.Size == 0; {
		n, tag, err := c.fetchRange(ctx, url, etag, off, t, f, h, pf)
		if tag != "" {
			etag = tag
		}
		if errors.Is(err, errRestart) {
			off, err = 0, nil
			if err := restart(f, h); err != nil {
				return err
			}
			continue
		}
		off += n
		if err == nil {
			break
		}
		if errors.Is(err, ErrTooLong) || ctx.Err() != nil {
			return fmt.Errorf("download %s: %w", t.Path, err)
		}
		// Progress forgives earlier failures, unless the attempt ended in a stall: a server
		// that sends a little and stalls every time must not keep the device forever.
		if n > 0 && !errors.Is(err, stall.ErrStalled) {
			failures = 0
		} else if failures++; failures > retries {
			return fmt.Errorf("download %s: gave up after %d attempts: %w", t.Path, failures, err)
		}
		wait := backoff << min(failures, 5)
		select {
		case <-ctx.Done():
			return fmt.Errorf("download %s: %w", t.Path, ctx.Err())
		case <-time.After(min(wait, 30*time.Second)):
		}
	}
	if off != t.Size {
		return fmt.Errorf("download %s: got %d of %d bytes", t.Path, off, t.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != t.SHA256 {
		return fmt.Errorf("download %s: %w: got sha256 %s, signed %s", t.Path, ErrHashMismatch, got, t.SHA256)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download %s: sync: %w", t.Path, err)
	}
	return nil
}

var errRestart = errors.New("restart from the beginning")

func restart(f File, h hash.Hash) error {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("download: truncate: %w", err)
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// fetchRange appends bytes from offset off to f, returning how many it wrote.
func (c *Client) fetchRange(ctx context.Context, url, etag string, off int64, t ota.Target, f File, h hash.Hash, pf progress.Func) (int64, string, error) {
	ctx, wd := c.watch(ctx)
	defer wd.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if etag != "" {
			req.Header.Set("If-Range", etag)
		}
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return 0, "", wd.Err(err)
	}
	defer resp.Body.Close()
	tag := resp.Header.Get("ETag")
	switch {
	case resp.StatusCode == http.StatusOK && off > 0:
		// The server ignored the range (or the file changed): start over.
		return 0, tag, errRestart
	case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && off >= t.Size:
		return 0, tag, nil
	case resp.StatusCode == http.StatusNotFound:
		return 0, tag, fmt.Errorf("%s: %w", url, ErrNotFound)
	default:
		return 0, tag, fmt.Errorf("%s: %s", url, resp.Status)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, tag, err
	}
	// Read one byte more than the rest of the signed length to notice endless data.
	rest := t.Size - off
	w := &progress.Writer{W: io.MultiWriter(f, h), F: pf, Phase: "downloading", Total: t.Size, Base: off}
	buf := make([]byte, 256<<10)
	body := wd.Reader(resp.Body)
	n, err := io.CopyBuffer(w, io.LimitReader(body, rest), buf)
	if err != nil {
		return n, tag, err
	}
	if n < rest {
		return n, tag, io.ErrUnexpectedEOF
	}
	var one [1]byte
	if m, _ := io.ReadFull(body, one[:]); m > 0 {
		return n, tag, fmt.Errorf("%w: more than the signed %d bytes", ErrTooLong, t.Size)
	}
	return n, tag, nil
}
