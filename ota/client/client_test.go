package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// dirFetch serves metadata from a repository directory, with per-name overrides.
func dirFetch(dir string, override map[string][]byte) client.FetchFunc {
	return func(_ context.Context, name string, max int64) ([]byte, error) {
		if b, ok := override[name]; ok {
			return b, nil
		}
		b, err := os.ReadFile(filepath.Join(dir, "metadata", name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, client.ErrNotFound
		}
		if int64(len(b)) > max {
			return nil, client.ErrTooLong
		}
		return b, err
	}
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metadata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyAcceptsGoodRepository(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("one"), repo.Options{})
	otatest.Publish(t, dir, keys, "1.1.0", []byte("two"), repo.Options{})
	v := &client.Verifier{Root: keys.Root, StateDir: t.TempDir()}
	got, err := v.Update(context.Background(), dirFetch(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	if tg, ok := got.Lookup("tiny-1.1.0.efi"); !ok || tg.Version != "1.1.0" || tg.Size != 3 || tg.Channel != "stable" {
		t.Fatalf("verified targets %+v", got.Targets)
	}
}

func TestMetadataAttacksRejected(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("one"), repo.Options{})
	ts1, snap1, targets1 := read(t, dir, "timestamp.json"), read(t, dir, "1.snapshot.json"), read(t, dir, "1.targets.json")
	otatest.Publish(t, dir, keys, "1.1.0", []byte("two"), repo.Options{})

	// A device that has seen version 2 of the metadata.
	state := t.TempDir()
	if _, err := (&client.Verifier{Root: keys.Root, StateDir: state}).Update(context.Background(), dirFetch(dir, nil)); err != nil {
		t.Fatal(err)
	}

	// Another owner's repository, for metadata signed by unknown keys.
	otherKeys := otatest.Keys(t)
	other := t.TempDir()
	otatest.Publish(t, other, otherKeys, "9.0.0", []byte("evil"), repo.Options{})

	// The mix-and-match cases use a device that has not cached snapshot and targets 2 yet (one
	// that has never fetches them again).
	tests := []struct {
		name     string
		override map[string][]byte
		now      time.Time
		want     error
		fresh    bool
	}{
		{"rollback to older timestamp", map[string][]byte{"timestamp.json": ts1}, time.Time{}, client.ErrRollback, false},
		{"expired timestamp", nil, time.Now().Add(repo.TimestampExpiry + time.Hour), client.ErrExpired, false},
		{"snapshot from another version", map[string][]byte{"2.snapshot.json": snap1}, time.Time{}, client.ErrMixAndMatch, true},
		{"targets from another snapshot", map[string][]byte{"2.targets.json": targets1}, time.Time{}, client.ErrMixAndMatch, true},
		{"timestamp signed by an unknown key", map[string][]byte{"timestamp.json": read(t, other, "timestamp.json")}, time.Time{}, client.ErrUnknownKey, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := &client.Verifier{Root: keys.Root, StateDir: state}
			if tc.fresh {
				v.StateDir = t.TempDir()
			}
			if !tc.now.IsZero() {
				v.Now = func() time.Time { return tc.now }
			}
			_, err := v.Update(context.Background(), dirFetch(dir, tc.override))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A whole repository signed by unknown keys (snapshot, targets and all).
	_, err := (&client.Verifier{Root: keys.Root}).Update(context.Background(), dirFetch(other, nil))
	if !errors.Is(err, client.ErrUnknownKey) {
		t.Fatalf("foreign repository: err = %v, want ErrUnknownKey", err)
	}
	// A targets file re-signed by an unknown key but with the right hash in a forged snapshot
	// fails at the snapshot's signature already; a forged root rotation is refused too.
	_, err = (&client.Verifier{Root: keys.Root}).Update(context.Background(), dirFetch(dir, map[string][]byte{"2.root.json": otherKeys.Root}))
	if !errors.Is(err, client.ErrUnknownKey) {
		t.Fatalf("forged root rotation: err = %v, want ErrUnknownKey", err)
	}
}

// cutter passes requests to next and cuts the connection after cuts[i] bytes of response i.
type cutter struct {
	next   http.Handler
	mu     sync.Mutex
	cuts   []int64
	served atomic.Int64
}

type cutWriter struct {
	http.ResponseWriter
	c      *cutter
	left   int64
	cutOff bool
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if w.cutOff && int64(len(p)) > w.left {
		n, _ := w.ResponseWriter.Write(p[:w.left])
		w.c.served.Add(int64(n))
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	n, err := w.ResponseWriter.Write(p)
	w.left -= int64(n)
	w.c.served.Add(int64(n))
	return n, err
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	cw := &cutWriter{ResponseWriter: w, c: c}
	if len(c.cuts) > 0 {
		cw.left, cw.cutOff = c.cuts[0], true
		c.cuts = c.cuts[1:]
	}
	c.mu.Unlock()
	c.next.ServeHTTP(cw, r)
}

func newServer(t *testing.T, dir string) *server.Server {
	t.Helper()
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDownloadResumesAfterCuts(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	payload := otatest.Payload(24<<20, 3)
	pub := otatest.Publish(t, dir, keys, "1.0.0", payload, repo.Options{})
	cuts := []int64{1, 3 << 20, 64 << 10, 7<<20 + 12345, 0, 5 << 20}
	proxy := &cutter{next: newServer(t, dir).Handler(), cuts: append([]int64(nil), cuts...)}
	ts := httptest.NewServer(proxy)
	defer ts.Close()

	f, err := os.Create(filepath.Join(t.TempDir(), "payload.part"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &client.Client{BaseURL: ts.URL, Backoff: time.Millisecond}
	if err := c.Download(context.Background(), pub.Target, f, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, payload) {
		t.Fatal("downloaded payload differs")
	}
	refetched := proxy.served.Load() - int64(len(payload))
	if limit := int64(len(cuts)) * 4 << 20; refetched > limit {
		t.Fatalf("re-fetched %d bytes over %d cuts; want at most 4 MiB per cut", refetched, len(cuts))
	}
	t.Logf("%d cuts, %d bytes re-fetched", len(cuts), refetched)

	// An agent restarted with a partial file resumes from it.
	f.Truncate(10 << 20)
	proxy.served.Store(0)
	if err := c.Download(context.Background(), pub.Target, f, nil); err != nil {
		t.Fatal(err)
	}
	if n := proxy.served.Load(); n != int64(len(payload))-10<<20 {
		t.Fatalf("resumed download fetched %d bytes, want the missing %d", n, len(payload)-10<<20)
	}
}

func TestPayloadAttacksRejected(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	payload := otatest.Payload(1<<20, 4)
	pub := otatest.Publish(t, dir, keys, "1.0.0", payload, repo.Options{})
	name := "/" + ota.TargetFile(pub.Target.Path, pub.Target.SHA256)

	tampered := bytes.Clone(payload)
	tampered[4096] ^= 1
	for _, tc := range []struct {
		name string
		body func(w http.ResponseWriter)
		want error
	}{
		{"hash mismatch", func(w http.ResponseWriter) { w.Write(tampered) }, client.ErrHashMismatch},
		{"endless data", func(w http.ResponseWriter) {
			w.Write(payload)
			chunk := bytes.Repeat([]byte{0}, 64<<10)
			for i := 0; i < 1<<14; i++ { // 1 GiB unless the client hangs up
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, client.ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != name {
					http.NotFound(w, r)
					return
				}
				tc.body(w)
			}))
			defer ts.Close()
			f, _ := os.Create(filepath.Join(t.TempDir(), "p"))
			defer f.Close()
			err := (&client.Client{BaseURL: ts.URL, Backoff: time.Millisecond}).Download(context.Background(), pub.Target, f, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if fi, _ := f.Stat(); fi.Size() > pub.Target.Size {
				t.Fatalf("wrote %d bytes, more than the signed %d", fi.Size(), pub.Target.Size)
			}
			if !strings.Contains(err.Error(), pub.Target.Path) {
				t.Errorf("error %q does not name the target", err)
			}
		})
	}
}

// TestRootRenewalChain: a device pinning the first trust root keeps accepting updates after that
// root's expiry, by following the renewed root the owner's keys signed.
func TestRootRenewalChain(t *testing.T) {
	keys := otatest.Keys(t)
	pinned := keys.Root
	later := time.Now().Add(repo.RootExpiry + 24*time.Hour) // the first root has expired
	if err := keys.RenewRoot(later); err != nil {
		t.Fatal(err)
	}
	if keys.RootVersion() != 2 {
		t.Fatalf("root version %d after renewal, want 2", keys.RootVersion())
	}
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("one"), repo.Options{Now: func() time.Time { return later }})
	at := func() time.Time { return later.Add(time.Hour) }
	got, err := (&client.Verifier{Root: pinned, Now: at}).Update(context.Background(), dirFetch(dir, nil))
	if err != nil {
		t.Fatalf("device pinning root 1: %v", err)
	}
	if got.Root.Signed.Version != 2 {
		t.Fatalf("verified with root version %d, want 2", got.Root.Signed.Version)
	}
	// Without version 2 in the repository the expired pinned root is refused.
	os.Remove(filepath.Join(dir, "metadata", "2.root.json"))
	if _, err := (&client.Verifier{Root: pinned, Now: at}).Update(context.Background(), dirFetch(dir, nil)); !errors.Is(err, client.ErrExpired) {
		t.Fatalf("expired pinned root without renewal: %v, want ErrExpired", err)
	}
}
