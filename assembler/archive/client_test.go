package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

var small = []archivetest.Pkg{
	archivetest.P("libc6", "2.36-9"),
	archivetest.P("hello", "2.10-3", "Depends", "libc6 (>= 2.34)"),
}

func TestLoadVerifiesAndUsesByHash(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2 {
		t.Errorf("loaded %d packages, want 2", a.Len())
	}
	var byHash bool
	for _, r := range ta.Seen() {
		byHash = byHash || strings.Contains(r, "/by-hash/SHA256/")
		if strings.HasSuffix(r, "Packages.xz") {
			t.Errorf("fetched %s by name although the archive sets Acquire-By-Hash", r)
		}
	}
	if !byHash {
		t.Errorf("no by-hash request among %q", ta.Seen())
	}
}

func TestLoadPlainPathWithoutByHash(t *testing.T) {
	ta := archivetest.New(t, nil, nil)
	ta.ByHash = false
	ta.Publish(small, nil)
	if _, err := load(t, ta); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ta.Seen(), "dists/stable/main/binary-amd64/Packages.xz") {
		t.Errorf("requests %q lack the plain Packages.xz path", ta.Seen())
	}
}

// An archive listing "all" among its architectures keeps arch-all packages in binary-all, which
// is read too; one that sets No-Support-for-Architecture-all lists them in every binary-<arch>
// index, and binary-all is not downloaded.
func TestArchAllIndex(t *testing.T) {
	withAll := []archivetest.Pkg{archivetest.P("libc6", "2.36-9"), archivetest.P("tzdata", "2024a-0", "Architecture", "all"), archivetest.P("app", "1", "Depends", "tzdata, libc6")}
	ta := archivetest.New(t, nil, nil)
	ta.AllIndex = true
	ta.Publish(withAll, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Resolve([]string{"app"}, Options{}); err != nil || names(got) != "app=1 libc6=2.36-9 tzdata=2024a-0" {
		t.Fatalf("Resolve with binary-all = %s, %v", names(got), err)
	}

	ta = archivetest.New(t, nil, nil)
	ta.AllIndex = true
	ta.Publish(withAll, map[string]string{"No-Support-for-Architecture-all": "Packages"})
	if _, err := load(t, ta); err != nil {
		t.Fatal(err)
	}
	for _, r := range ta.Seen() {
		if strings.Contains(r, "binary-all") {
			t.Errorf("fetched %s although the release says arch-all packages are in every index", r)
		}
	}
}

func TestBadSignatureRefused(t *testing.T) {
	cases := map[string]func(*archivetest.Archive){
		"other key": func(ta *archivetest.Archive) {
			other, err := openpgp.NewEntity("Someone else", "", "x@example.invalid", nil)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(ta.Keyring, archivetest.ArmoredPublic(t, other), 0o644)
		},
		"altered text": func(ta *archivetest.Archive) {
			ta.SetTamper(func(p string, b []byte) []byte {
				if strings.HasSuffix(p, "InRelease") {
					return bytes.Replace(b, []byte("Suite: stable"), []byte("Suite: stablf"), 1)
				}
				return b
			})
		},
		"unsigned text before the block": func(ta *archivetest.Archive) {
			ta.SetTamper(func(p string, b []byte) []byte {
				if strings.HasSuffix(p, "InRelease") {
					return append([]byte("Suite: evil\n\n"), b...)
				}
				return b
			})
		},
		"unsigned text after the block": func(ta *archivetest.Archive) {
			ta.SetTamper(func(p string, b []byte) []byte {
				if strings.HasSuffix(p, "InRelease") {
					return append(append([]byte(nil), b...), "\nSHA256:\n 00 1 x\n"...)
				}
				return b
			})
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			ta := archivetest.New(t, small, nil)
			spoil(ta)
			_, err := load(t, ta)
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("Load = %v, want ErrSignature", err)
			}
		})
	}
}

func TestExpiredReleaseRefused(t *testing.T) {
	ta := archivetest.New(t, small, map[string]string{"Valid-Until": time.Now().UTC().Add(-time.Minute).Format(time.RFC1123)})
	_, err := load(t, ta)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Load = %v, want an expiry error", err)
	}
}

func TestPackagesHashMismatchRefused(t *testing.T) {
	for _, byHash := range []bool{true, false} {
		ta := archivetest.New(t, nil, nil)
		ta.ByHash = byHash
		ta.Publish(small, nil)
		ta.SetTamper(func(p string, b []byte) []byte {
			if strings.Contains(p, "binary-amd64/") && !strings.HasSuffix(p, "/Packages") {
				// Same size, one byte changed: a substituted index.
				b = append([]byte(nil), b...)
				b[len(b)/2] ^= 1
			}
			return b
		})
		_, err := load(t, ta)
		if !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("by-hash %v: Load = %v, want ErrHashMismatch", byHash, err)
		}
	}
}

func fetchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFetchResumesACutDownload(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Resolve([]string{"hello"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	items := Items(got)
	f := &Fetcher{Cache: t.TempDir()}
	// An earlier run was cut after 100 bytes of hello's .deb.
	hello := got[0]
	deb := ta.File(hello.Filename)
	os.MkdirAll(filepath.Join(f.Cache, "sha256"), 0o755)
	if err := os.WriteFile(f.Path(hello.SHA256)+".part", deb[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	f.Jobs = 1
	paths, err := f.Fetch(fetchCtx(t), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, ta.File(got[i].Filename)) {
			t.Errorf("%s: cached file differs from the archive's (%v)", got[i].Name, err)
		}
	}
	if !slices.Contains(ta.Seen(), hello.Filename+" bytes=100-") {
		t.Errorf("requests %q: hello was not resumed from byte 100", ta.Seen())
	}
	// A warm cache needs no network.
	ta.Close()
	if _, err := f.Fetch(fetchCtx(t), items); err != nil {
		t.Fatalf("warm fetch with the mirror down: %v", err)
	}
}

func TestFetchRefusesWrongContent(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Resolve([]string{"libc6"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ta.SetTamper(func(p string, b []byte) []byte {
		if strings.HasSuffix(p, ".deb") {
			b = append([]byte(nil), b...)
			b[0] ^= 1
		}
		return b
	})
	f := &Fetcher{Cache: t.TempDir()}
	if _, err := f.Fetch(fetchCtx(t), Items(got)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Fetch = %v, want ErrHashMismatch", err)
	}
	if _, err := os.Stat(f.Path(got[0].SHA256)); err == nil {
		t.Errorf("a file with the wrong hash entered the cache")
	}
}

func TestFetchCancelled(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.Resolve([]string{"hello"}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &Fetcher{Cache: t.TempDir()}
	if _, err := f.Fetch(ctx, Items(got)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestLockRoundTripAndInstallsTheLockedSet(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Resolve([]string{"hello"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lock := NewLock("amd64", got)
	data, err := lock.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadLock(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(data, again) {
		t.Fatalf("lock round trip differs:\n%s\n%s", data, again)
	}
	if len(back.Packages) != 2 || back.Packages[1].Name != "libc6" || back.Packages[1].Suite != "stable" || back.Packages[1].Component != "main" {
		t.Fatalf("read back %+v", back.Packages)
	}

	// The archive moves on: hello 2.12 replaces 2.10 (the old .deb stays in the pool, as in Debian).
	newer := []archivetest.Pkg{archivetest.P("libc6", "2.36-9"), archivetest.P("hello", "2.12-1", "Depends", "libc6")}
	for _, s := range newer {
		ta.SetFile(s.Filename(), s.Deb())
	}
	ta.Publish(newer, nil)
	items, err := back.Items([]Source{source(ta)})
	if err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Cache: t.TempDir()}
	paths, err := f.Fetch(fetchCtx(t), items)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(paths[0])
	if !bytes.Equal(b, small[1].Deb()) {
		t.Errorf("installed hello is not the locked 2.10-3")
	}

	// A pool file replaced under the same name is refused.
	ta.SetFile(small[1].Filename(), []byte("something else"))
	f2 := &Fetcher{Cache: t.TempDir()}
	if _, err := f2.Fetch(fetchCtx(t), items); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("fetch of a replaced locked file = %v, want ErrHashMismatch", err)
	}
}

func TestReadLockRejects(t *testing.T) {
	good := `{"version":1,"arch":"amd64","packages":[{"name":"hello","version":"2.10-3","arch":"amd64","suite":"stable","component":"main","filename":"pool/main/h/hello/hello_2.10-3_amd64.deb","size":10,"sha256":"` + strings.Repeat("a", 64) + `"}]}`
	if _, err := ReadLock(strings.NewReader(good)); err != nil {
		t.Fatalf("good lock: %v", err)
	}
	for name, bad := range map[string]string{
		"traversal":     strings.Replace(good, "pool/main", "../../etc", 1),
		"bad sha":       strings.Replace(good, strings.Repeat("a", 64), "abc", 1),
		"unknown field": strings.Replace(good, `"arch":"amd64",`, `"arch":"amd64","x":1,`, 1),
		"bad version":   strings.Replace(good, "2.10-3", "two", 1),
		"format":        strings.Replace(good, `"version":1`, `"version":9`, 1),
		"trailing":      good + "{}",
	} {
		if _, err := ReadLock(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A mirror that sends part of a file and then nothing (TUF's slow-retrieval attack, or a dead
// link) does not hold the download forever: it fails as stalled, and the next run resumes.
func TestFetchStalledDownloadResumes(t *testing.T) {
	ta := archivetest.New(t, small, nil)
	a, err := load(t, ta)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Resolve([]string{"libc6"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	deb := small[0].Deb()
	release := make(chan struct{})
	defer close(release)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(deb)))
		w.Write(deb[:1000])
		w.(http.Flusher).Flush()
		select { // then nothing, until the client gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer stall.Close()
	items := Items(got)
	items[0].URLs = []string{stall.URL + "/debian/" + got[0].Filename}
	f := &Fetcher{Cache: t.TempDir(), Idle: 200 * time.Millisecond}
	if _, err := f.Fetch(fetchCtx(t), items); !errors.Is(err, ErrStalled) {
		t.Fatalf("Fetch from a stalling mirror = %v, want ErrStalled", err)
	}
	if st, err := os.Stat(f.Path(got[0].SHA256) + ".part"); err != nil || st.Size() != 1000 {
		t.Fatalf("partial download: %v, %v; want the 1000 bytes received kept", st, err)
	}
	items = Items(got)
	paths, err := f.Fetch(fetchCtx(t), items)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(paths[0]); !bytes.Equal(b, deb) {
		t.Errorf("resumed file differs")
	}
	if !slices.Contains(ta.Seen(), got[0].Filename+" bytes=1000-") {
		t.Errorf("second run did not resume at byte 1000: %q", ta.Seen())
	}
}
