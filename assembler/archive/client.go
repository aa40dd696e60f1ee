package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/xi2/xz"

	"github.com/kilnproject/kiln/internal/progress"
)

// Client loads the package indices of a set of sources. A Client runs one Load at a time.
type Client struct {
	Sources  []Source
	Arches   []string         // architectures to load; the first is native
	HTTP     *http.Client     // nil: a client with timeouts
	Now      func() time.Time // nil: time.Now; for Valid-Until and Date checks
	Progress progress.Func
	Idle     time.Duration // a download receiving nothing this long fails; 0: 60 s

	fetched int64 // bytes downloaded by the running Load, for progress
}

// maxInRelease bounds an InRelease download (Debian's are about 150 KiB).
const maxInRelease = 32 << 20

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 30 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   8,
}}

// Load fetches and verifies every source's InRelease, fetches the Packages indices of its
// components for the client's architectures (by hash when the archive offers it), checks each
// against InRelease's size and SHA-256 and reads it into an Archive.
func (c *Client) Load(ctx context.Context) (*Archive, error) {
	if len(c.Arches) == 0 {
		return nil, fmt.Errorf("archive: no architecture given")
	}
	if len(c.Sources) == 0 {
		return nil, fmt.Errorf("archive: no sources given")
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	a := NewArchive(c.Arches...)
	c.fetched = 0
	for _, s := range c.Sources {
		if err := c.loadSource(ctx, a, s, now()); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (c *Client) loadSource(ctx context.Context, a *Archive, s Source, now time.Time) error {
	keyData, keyName, err := s.keyring()
	if err != nil {
		return err
	}
	keys, err := parseKeyring(keyData, keyName)
	if err != nil {
		return err
	}
	base := s.URI + "/dists/" + s.Suite + "/"
	data, err := c.get(ctx, base+"InRelease", maxInRelease)
	if err != nil {
		return err
	}
	rel, err := VerifyInRelease(data, keys, now)
	if err != nil {
		return fmt.Errorf("%s: %w", base+"InRelease", err)
	}
	arches := c.Arches
	if len(s.Arches) > 0 {
		arches = nil
		for _, ar := range c.Arches {
			if slices.Contains(s.Arches, ar) {
				arches = append(arches, ar)
			}
		}
	}
	if slices.Contains(rel.Architectures, "all") && !rel.NoArchAll {
		arches = append(arches, "all") // "all" packages listed in binary-all only
	}
	for _, comp := range s.Components {
		o := &Origin{URI: s.URI, Suite: s.Suite, Component: comp, Priority: rel.Priority()}
		for _, ar := range arches {
			idx := comp + "/binary-" + ar + "/Packages"
			body, err := c.index(ctx, base, idx, rel)
			if err != nil {
				return err
			}
			if body == nil {
				continue // the suite has no index for this architecture
			}
			if err := a.Add(o, body); err != nil {
				return fmt.Errorf("%s: %w", base+idx, err)
			}
		}
	}
	return nil
}

// index fetches the xz-compressed index idx listed in rel, checks it, and returns its
// decompressed content (capped by DefaultLimits.Total), or nil when rel lists no such index.
func (c *Client) index(ctx context.Context, base, idx string, rel *Release) (io.Reader, error) {
	fh, ok := rel.Files[idx+".xz"]
	if !ok {
		if _, plain := rel.Files[idx]; plain {
			return nil, fmt.Errorf("%s%s: only uncompressed indices listed; Kiln reads Packages.xz", base, idx)
		}
		return nil, nil
	}
	url := base + idx + ".xz"
	if rel.AcquireByHash {
		url = base + idx[:strings.LastIndexByte(idx, '/')+1] + "by-hash/SHA256/" + fh.SHA256
	}
	data, err := c.get(ctx, url, fh.Size)
	if err != nil {
		return nil, err
	}
	if err := checkHash(data, fh); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	zr, err := xz.NewReader(bytes.NewReader(data), 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return io.LimitReader(zr, DefaultLimits.Total+1), nil
}

// ErrHashMismatch is wrapped by errors for a download whose size or SHA-256 differs from the
// signed metadata.
var ErrHashMismatch = fmt.Errorf("size or SHA-256 differs from the signed metadata")

func checkHash(data []byte, fh FileHash) error {
	sum := sha256.Sum256(data)
	if int64(len(data)) != fh.Size || hex.EncodeToString(sum[:]) != fh.SHA256 {
		return fmt.Errorf("%w (got %d bytes, sha256 %x; want %d bytes, %s): the mirror is inconsistent or tampered with; retry later or use another mirror",
			ErrHashMismatch, len(data), sum, fh.Size, fh.SHA256)
	}
	return nil
}

// get downloads url, refusing bodies over max bytes.
func (c *Client) get(ctx context.Context, url string, max int64) ([]byte, error) {
	ctx, wd := watch(ctx, c.Idle)
	defer wd.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", wd.Err(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("archive: GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(wd.Reader(resp.Body), max+1))
	if err != nil {
		return nil, fmt.Errorf("archive: GET %s: %w", url, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("archive: GET %s: over %d bytes: %w", url, max, ErrTooLarge)
	}
	c.fetched += int64(len(data))
	c.Progress.Report(progress.Event{Phase: "indices", Done: c.fetched, Message: url})
	return data, nil
}
