package source

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/internal/testenv"
)

// testServer serves one file on 127.0.0.1, answering Range requests when ranges is set. Each cut
// point breaks one response right after that byte (the connection is dropped mid-body); stallAt
// makes one response stop sending there and hang.
type testServer struct {
	*httptest.Server
	mu       sync.Mutex
	data     []byte
	ranges   bool
	cuts     []int64
	stallAt  int64
	status   int // answer every request with this status when not 0
	requests int
	// dieAt breaks every response at that byte (and those starting there at once).
	dieAt int64
	// changeAfterFirst serves different bytes from the second request on.
	changeAfterFirst bool
}

func newTestServer(t *testing.T, data []byte, ranges bool, cuts ...int64) *testServer {
	t.Helper()
	ts := &testServer{data: data, ranges: ranges, cuts: slices.Clone(cuts), stallAt: -1}
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) serve(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	ts.requests++
	data := ts.data
	if ts.changeAfterFirst && ts.requests > 1 {
		data = bytes.Clone(data)
		data[10] ^= 0xff
	}
	status := ts.status
	start := int64(0)
	if v := r.Header.Get("Range"); ts.ranges && v != "" {
		s, _, _ := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
		start, _ = strconv.ParseInt(s, 10, 64)
	}
	end := int64(len(data))
	cut := false
	for i, c := range ts.cuts {
		if c > start && c < end {
			end, cut = c, true
			ts.cuts = slices.Delete(ts.cuts, i, i+1)
			break
		}
	}
	if ts.dieAt > 0 && ts.dieAt < end {
		end, cut = max(start, ts.dieAt), true
	}
	stall := false
	if ts.stallAt > start && ts.stallAt < end {
		end, stall, cut = ts.stallAt, true, false
		ts.stallAt = -1
	}
	ts.mu.Unlock()
	if status != 0 {
		http.Error(w, "no", status)
		return
	}
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)-int(start)))
	if ts.ranges {
		w.Header().Set("Accept-Ranges", "bytes")
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
		}
	}
	w.Write(data[start:end])
	w.(http.Flusher).Flush()
	switch {
	case stall:
		<-r.Context().Done()
		panic(http.ErrAbortHandler)
	case cut:
		panic(http.ErrAbortHandler) // drops the connection mid-body
	}
}

// testData is a mix of random and repeated bytes (so compression helps but does not erase it).
func testData(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		if (i/4096)%3 == 0 {
			for j := i; j < min(n, i+4096); j++ {
				b[j] = byte(rng.Uint32())
			}
		} else {
			copy(b[i:min(n, i+4096)], bytes.Repeat([]byte("kiln"), 1024))
		}
	}
	return b
}

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch format {
	case Raw:
		return data
	case Gzip:
		w := gzip.NewWriter(&out)
		w.Write(data)
		w.Close()
	case Zstd:
		w, _ := zstd.NewWriter(&out)
		w.Write(data)
		w.Close()
	case Zip:
		w := zip.NewWriter(&out)
		e, _ := w.Create("os.img")
		e.Write(data)
		w.Close()
	case XZ, Bzip2:
		args := map[string][]string{XZ: {"xz", "-c", "-1", "-T2", "--block-size=300KiB"}, Bzip2: {"bzip2", "-c"}}[format]
		cmd := exec.Command(testenv.Tool(t, args[0]), args[1:]...)
		cmd.Stdin = bytes.NewReader(data)
		b, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return out.Bytes()
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func readURL(t *testing.T, url, decoder string, f Fetch) ([]byte, *Image, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	im, err := ProbeWith(ctx, url, f)
	if err != nil {
		return nil, nil, err
	}
	defer im.Release()
	im.Decoder = decoder
	r, err := im.Open(ctx)
	if err != nil {
		return nil, im, err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	return got, im, err
}

// Every format streams from a URL, through connections cut at several points, and decodes to the
// same bytes; the download's sha256 is the file's.
func TestURLResumesEveryFormat(t *testing.T) {
	data := testData(3 << 20)
	for _, format := range []string{Raw, Gzip, XZ, Zstd, Bzip2, Zip} {
		for _, decoder := range []string{"go", "exec"} {
			if decoder == "exec" && format != Gzip && format != XZ {
				continue
			}
			t.Run(format+"/"+decoder, func(t *testing.T) {
				file := compress(t, format, data)
				n := int64(len(file))
				ts := newTestServer(t, file, true, 1, headCache+7, n/3, n/2+1, n-tailCache-3, n-2)
				got, im, err := readURL(t, ts.URL+"/os.img", decoder, Fetch{})
				if err != nil {
					t.Fatal(err)
				}
				if im.Format != format {
					t.Errorf("format %s, want %s", im.Format, format)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("decoded %d bytes, differing from the %d-byte image", len(got), len(data))
				}
				if im.Size >= 0 && im.Size != int64(len(data)) {
					t.Errorf("probed size %d, want %d", im.Size, len(data))
				}
				s, err := im.DownloadSHA256(context.Background())
				if err != nil || s != sum(file) {
					t.Errorf("download sha256 %s, %v; want %s", s, err, sum(file))
				}
				if len(ts.cuts) == 6 {
					t.Error("no connection was cut: the test proves nothing")
				}
			})
		}
	}
}

// A server that ignores Range requests: a download cut mid-way restarts from the beginning and
// checks that the bytes it skips are the ones already read.
func TestURLWithoutRanges(t *testing.T) {
	data := testData(2 << 20)
	for _, format := range []string{Raw, Gzip, XZ} {
		t.Run(format, func(t *testing.T) {
			file := compress(t, format, data)
			ts := newTestServer(t, file, false, int64(len(file))/2)
			got, im, err := readURL(t, ts.URL, "exec", Fetch{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("decoded bytes differ from the image")
			}
			if s, _ := im.DownloadSHA256(context.Background()); s != sum(file) {
				t.Errorf("download sha256 %s, want %s", s, sum(file))
			}
			if ts.requests < 2 {
				t.Errorf("%d requests: the cut was not resumed", ts.requests)
			}
		})
	}
	t.Run("changed", func(t *testing.T) {
		ts := newTestServer(t, data, false, int64(len(data))/2)
		ts.changeAfterFirst = true
		_, _, err := readURL(t, ts.URL, "", Fetch{})
		if err == nil || !strings.Contains(err.Error(), "changed") || !errors.Is(err, ErrDownload) {
			t.Fatalf("got %v, want a download error saying the file changed", err)
		}
	})
	t.Run("zip", func(t *testing.T) {
		ts := newTestServer(t, compress(t, Zip, data), false)
		_, _, err := readURL(t, ts.URL, "", Fetch{})
		if err == nil || !strings.Contains(err.Error(), "range requests") {
			t.Fatalf("got %v, want an error saying the server ignores range requests", err)
		}
	})
}

// A connection that stops sending is cut after the stall time and resumed.
func TestURLStallResumes(t *testing.T) {
	data := testData(1 << 20)
	ts := newTestServer(t, data, true)
	ts.stallAt = 300 << 10
	start := time.Now()
	got, _, err := readURL(t, ts.URL, "", Fetch{Stall: 300 * time.Millisecond})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("took %s", el)
	}
}

func TestURLErrors(t *testing.T) {
	data := testData(256 << 10)
	t.Run("404", func(t *testing.T) {
		ts := newTestServer(t, data, true)
		ts.status = http.StatusNotFound
		_, _, err := readURL(t, ts.URL, "", Fetch{})
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("got %v, want the server's 404", err)
		}
	})
	t.Run("500 retried then given up", func(t *testing.T) {
		ts := newTestServer(t, data, true)
		ts.status = http.StatusInternalServerError
		_, _, err := readURL(t, ts.URL, "", Fetch{Retries: 2})
		if err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("got %v, want the server's 500", err)
		}
		if ts.requests != 3 {
			t.Errorf("%d requests, want 3 (2 retries)", ts.requests)
		}
	})
	t.Run("cut for good", func(t *testing.T) {
		file := compress(t, Gzip, data)
		ts := newTestServer(t, file, true)
		ts.dieAt = int64(len(file)) - 100
		_, _, err := readURL(t, ts.URL, "go", Fetch{Retries: 3})
		if err == nil || !errors.Is(err, ErrDownload) {
			t.Fatalf("got %v, want a download error", err)
		}
	})
	t.Run("not a URL", func(t *testing.T) {
		if _, err := ProbeWith(context.Background(), "http://", Fetch{}); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 5-9/10", 5, 10, true},
		{"bytes 5-9/*", 0, 0, false},
		{"bytes 9-5/10", 0, 0, false},
		{"bytes 0-10/10", 0, 0, false},
		{"items 0-9/10", 0, 0, false},
		{"bytes -1-9/10", 0, 0, false},
	} {
		s, tot, ok := parseContentRange(c.in)
		if ok != c.ok || (ok && (s != c.start || tot != c.total)) {
			t.Errorf("%q: %d %d %v", c.in, s, tot, ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes 18446744073709551615-1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, total, ok := parseContentRange(v)
		if ok && (start < 0 || start >= total || total > 1<<62) {
			t.Fatalf("%q: start %d total %d", v, start, total)
		}
	})
}
