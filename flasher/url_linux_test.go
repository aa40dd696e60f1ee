package flasher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/testenv"
)

// imageServer serves one file on 127.0.0.1 (with Range support when ranges is set), dropping the
// connection once after each cut point, and every response at dieAt when that is set.
type imageServer struct {
	*httptest.Server
	mu       sync.Mutex
	data     []byte
	ranges   bool
	cuts     []int64
	dieAt    int64
	requests int
}

func serveImage(t *testing.T, data []byte, ranges bool, cuts ...int64) *imageServer {
	t.Helper()
	s := &imageServer{data: data, ranges: ranges, cuts: slices.Clone(cuts)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		start, end := int64(0), int64(len(s.data))
		if v := r.Header.Get("Range"); s.ranges && v != "" {
			a, _, _ := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
			start, _ = strconv.ParseInt(a, 10, 64)
		}
		cut := false
		for i, c := range s.cuts {
			if c > start && c < end {
				end, cut = c, true
				s.cuts = slices.Delete(s.cuts, i, i+1)
				break
			}
		}
		if s.dieAt > 0 && s.dieAt < end {
			end, cut = max(start, s.dieAt), true
		}
		s.mu.Unlock()
		w.Header().Set("Content-Length", strconv.FormatInt(int64(len(s.data))-start, 10))
		if s.ranges && r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(s.data)-1, len(s.data)))
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(s.data[start:end])
		if cut {
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func xzFile(t *testing.T, img string) []byte {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "xz"), "-c", "-1", "-T2", "--block-size=1MiB", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// Raw and xz images flash from a local HTTP server onto a loop drive through connections cut at
// several points; the drive reads back identical to the image, and a published sha256 of either
// the download or the image is accepted.
func TestFlashFromURL(t *testing.T) {
	needRoot(t, "cmp", "xz")
	dir := t.TempDir()
	img := testImage(t, dir, 9<<20+512)
	raw, _ := os.ReadFile(img)
	packed := xzFile(t, img)
	for _, c := range []struct {
		name, sum string
		file      []byte
		decoder   string
	}{
		{"raw", sha256Hex(raw), raw, ""},
		{"xz program, download sum", sha256Hex(packed), packed, "exec"},
		{"xz built in, image sum", sha256Hex(raw), packed, "go"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := int64(len(c.file))
			srv := serveImage(t, c.file, true, 1, 70000, n/3, n/2, n-3)
			dev := loopDevice(t, 16<<20)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := Flash(ctx, srv.URL+"/os.img", []string{dev}, Options{SHA256: c.sum, Decoder: c.decoder})
			if err != nil {
				t.Fatal(err)
			}
			if !res[0].Verified || res[0].Written != int64(len(raw)) || res[0].SHA256 != sha256Hex(raw) {
				t.Fatalf("result %+v", res[0])
			}
			cmpDevice(t, dev, img)
			if len(srv.cuts) != 0 || srv.requests < 5 {
				t.Errorf("%d cuts left, %d requests: the cuts did not happen", len(srv.cuts), srv.requests)
			}
		})
	}
}

// A wrong sha256 fails the flash as partly written, saying so, and leaves the first MiB unwritten.
func TestFlashFromURLWrongSum(t *testing.T) {
	needRoot(t, "xz")
	img := testImage(t, t.TempDir(), 6<<20)
	packed := xzFile(t, img)
	srv := serveImage(t, packed, true)
	dev := loopDevice(t, 8<<20)
	wrong := strings.Repeat("ab", 32)
	res, err := Flash(context.Background(), srv.URL+"/os.img.xz", []string{dev}, Options{SHA256: wrong})
	if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrPartlyWritten) {
		t.Fatalf("want a checksum error leaving the drive partly written, got %v", err)
	}
	for _, want := range []string{"sha256", wrong, sha256Hex(packed)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if res[0].Verified {
		t.Error("reported verified")
	}
	head := make([]byte, headSize)
	f, _ := os.Open(dev)
	defer f.Close()
	f.ReadAt(head, 0)
	if !bytes.Equal(head, make([]byte, headSize)) {
		t.Error("the first MiB was written despite the checksum mismatch")
	}
}

// A server without Range support: a cut after the first bytes restarts the download and skips
// the bytes already written (checking them); a download that keeps failing leaves the drive
// partly written, never a success.
func TestFlashFromURLWithoutRanges(t *testing.T) {
	needRoot(t, "cmp")
	dir := t.TempDir()
	img := testImage(t, dir, 5<<20)
	raw, _ := os.ReadFile(img)
	t.Run("restart", func(t *testing.T) {
		srv := serveImage(t, raw, false, 3<<20+5)
		dev := loopDevice(t, 8<<20)
		if _, err := Flash(context.Background(), srv.URL, []string{dev}, Options{SHA256: sha256Hex(raw)}); err != nil {
			t.Fatal(err)
		}
		cmpDevice(t, dev, img)
		if srv.requests != 2 {
			t.Errorf("%d requests, want 2", srv.requests)
		}
	})
	t.Run("broken", func(t *testing.T) {
		srv := serveImage(t, raw, false)
		srv.dieAt = 4<<20 + 300<<10 // after the first 4 MiB chunk reached the drive
		dev := loopDevice(t, 8<<20)
		_, err := Flash(context.Background(), srv.URL, []string{dev}, Options{Fetch: source.Fetch{Retries: 2}})
		if !errors.Is(err, ErrPartlyWritten) || !errors.Is(err, source.ErrDownload) {
			t.Fatalf("want a partly written drive after a failed download, got %v", err)
		}
	})
}

// A confirmed download is kept in the cache and used by the next flash of the same checksum,
// without the server.
func TestFlashFromURLCache(t *testing.T) {
	needRoot(t, "cmp", "xz")
	dir := t.TempDir()
	img := testImage(t, dir, 4<<20)
	packed := xzFile(t, img)
	srv := serveImage(t, packed, true)
	cache := filepath.Join(dir, "cache")
	opts := Options{DownloadSHA256: sha256Hex(packed), Fetch: source.Fetch{CacheDir: cache}}
	dev := loopDevice(t, 8<<20)
	if _, err := Flash(context.Background(), srv.URL+"/a.img.xz", []string{dev}, opts); err != nil {
		t.Fatal(err)
	}
	kept, err := os.ReadFile(filepath.Join(cache, sha256Hex(packed)))
	if err != nil || !bytes.Equal(kept, packed) {
		t.Fatalf("cache holds %d bytes, %v", len(kept), err)
	}
	srv.Close()
	dev2 := loopDevice(t, 8<<20)
	if _, err := Flash(context.Background(), srv.URL+"/a.img.xz", []string{dev2}, opts); err != nil {
		t.Fatal(err)
	}
	cmpDevice(t, dev2, img)
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries, want 1", len(entries))
	}
}

// The privileged helper downloads a URL image itself (nothing to open as the user) and checks the
// published checksums the app sends; a wrong one fails the flash (the drive partly written).
func TestHelperFlashesURL(t *testing.T) {
	needRoot(t, "cmp", "xz")
	img := testImage(t, t.TempDir(), 5<<20)
	raw, _ := os.ReadFile(img)
	packed := xzFile(t, img)
	srv := serveImage(t, packed, true)
	dev := loopDevice(t, 8<<20)
	openAsUser := func(p string) (*os.File, error) {
		t.Errorf("the helper opened %s as the user", p)
		return OpenAsUser(p, 0, 0)
	}
	res, err, _ := helperPipe(t, HelperRequest{Image: srv.URL + "/os.img.xz", Devices: []string{dev},
		DownloadSHA256: sha256Hex(packed), ImageSHA256: sha256Hex(raw), SizeHint: int64(len(raw))}, openAsUser)
	if err != nil || len(res) != 1 || !res[0].Verified || res[0].DownloadSHA256 != sha256Hex(packed) {
		t.Fatalf("%v %+v", err, res)
	}
	cmpDevice(t, dev, img)
	_, err, _ = helperPipe(t, HelperRequest{Image: srv.URL + "/os.img.xz", Devices: []string{dev},
		ImageSHA256: strings.Repeat("0", 64)}, openAsUser)
	if !errors.Is(err, ErrPartlyWritten) || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("got %v, want a partly written drive after a sha256 mismatch", err)
	}
}
