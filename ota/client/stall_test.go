package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/stall"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// staller serves the repository in dir; its first stalls responses (all when stalls < 0) send
// half the body, at most 1 KiB, and then hang until the client goes away.
func staller(t *testing.T, dir string, stalls int64) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	done := make(chan struct{})
	files := http.FileServer(http.Dir(dir))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := n.Add(1); stalls >= 0 && i > stalls {
			files.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		files.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:min(1024, rec.Body.Len()/2)])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(done) })
	return ts, &n
}

// TestStalledDownloadResumes: a server that sends 1 KiB and stalls is cut after the stall
// period and the download resumes where it stopped.
func TestStalledDownloadResumes(t *testing.T) {
	dir := t.TempDir()
	payload := otatest.Payload(256<<10, 5)
	pub := otatest.Publish(t, dir, otatest.Keys(t), "1.0.0", payload, repo.Options{})
	ts, requests := staller(t, dir, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, _ := os.Create(filepath.Join(t.TempDir(), "p"))
	defer f.Close()
	c := &client.Client{BaseURL: ts.URL, Backoff: time.Millisecond, Stall: 200 * time.Millisecond}
	if err := c.Download(ctx, pub.Target, f, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, payload) {
		t.Fatal("downloaded payload differs")
	}
	if n := requests.Load(); n != 4 {
		t.Errorf("%d requests, want 3 stalled and 1 completing", n)
	}
}

// TestStalledDownloadGivesUp: a server that stalls every time makes the download fail with
// ErrStalled after Retries attempts, not hang.
func TestStalledDownloadGivesUp(t *testing.T) {
	dir := t.TempDir()
	pub := otatest.Publish(t, dir, otatest.Keys(t), "1.0.0", otatest.Payload(256<<10, 6), repo.Options{})
	ts, requests := staller(t, dir, -1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, _ := os.Create(filepath.Join(t.TempDir(), "p"))
	defer f.Close()
	c := &client.Client{BaseURL: ts.URL, Backoff: time.Millisecond, Retries: 2, Stall: 200 * time.Millisecond}
	err := c.Download(ctx, pub.Target, f, nil)
	if !errors.Is(err, stall.ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (Retries 2)", n)
	}
	// Metadata fetches are cut the same way.
	_, err = c.Metadata(ctx, "1.targets.json", 1<<20)
	if !errors.Is(err, stall.ErrStalled) {
		t.Fatalf("metadata: err = %v, want ErrStalled", err)
	}
}
