package stall

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A server on 127.0.0.1 that sends a little and then holds the connection open.
func stallingServer(t *testing.T, first string) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

func TestStalledBodyIsCut(t *testing.T) {
	srv := stallingServer(t, strings.Repeat("x", 1024))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wctx, wd := Watch(ctx, 200*time.Millisecond, 4096)
	defer wd.Stop()
	req, _ := http.NewRequestWithContext(wctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, wd.Reader(resp.Body))
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read %d bytes, err %v: want ErrStalled", n, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the outer deadline fired first: the watchdog did not cut the transfer")
	}
}

func TestSilentServerIsCutBeforeTheAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	wctx, wd := Watch(context.Background(), 200*time.Millisecond, 1)
	defer wd.Stop()
	req, _ := http.NewRequestWithContext(wctx, http.MethodGet, srv.URL, nil)
	_, err := http.DefaultClient.Do(req)
	if err = wd.Err(err); !errors.Is(err, ErrStalled) {
		t.Fatalf("err %v: want ErrStalled", err)
	}
}

func TestSteadyTransferPasses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 6 { // 6 × 50 ms: longer than the window, faster than the minimum rate
			io.WriteString(w, strings.Repeat("y", 512))
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	}))
	defer srv.Close()
	wctx, wd := Watch(context.Background(), 150*time.Millisecond, 256)
	defer wd.Stop()
	req, _ := http.NewRequestWithContext(wctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(wd.Err(err))
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, wd.Reader(resp.Body))
	if err != nil || n != 6*512 {
		t.Fatalf("read %d bytes, err %v: want all 3072", n, err)
	}
}
