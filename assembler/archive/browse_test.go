package archive

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

var browseUniverse = []archivetest.Pkg{
	archivetest.P("libc6", "2.36-9", "Installed-Size", "12000"),
	archivetest.P("libssl3", "3.0.8-1", "Depends", "libc6", "Installed-Size", "6000"),
	archivetest.P("python3", "3.11.2-1", "Depends", "libc6, python3.11", "Installed-Size", "100"),
	archivetest.P("python3.11", "3.11.2-6", "Depends", "libc6", "Installed-Size", "400"),
	archivetest.P("python3-yaml", "6.0-3", "Depends", "python3", "Installed-Size", "600"),
	archivetest.P("ipython3", "8.5.0-4", "Depends", "python3", "Installed-Size", "50"),
	archivetest.P("mosquitto", "2.0.11-1.2", "Depends", "libc6, libssl3 (>= 3.0.9)", "Installed-Size", "900"),
	archivetest.P("dropbear", "2022.83-1", "Depends", "libc6", "Provides", "ssh-server", "Installed-Size", "300"),
	archivetest.P("garden", "1.0", "Architecture", "all", "Depends", "python3, ssh-server", "Installed-Size", "4"),
}

func browseIndex(t *testing.T, ta *archivetest.Archive, hc *http.Client) *Index {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := (&Client{Sources: []Source{source(ta)}, Arches: []string{"amd64"}, HTTP: hc}).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return NewIndex(a)
}

func entryNames(es []Entry) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Name)
	}
	return strings.Join(s, " ")
}

func TestIndexSearch(t *testing.T) {
	ix := browseIndex(t, archivetest.New(t, browseUniverse, nil), nil)
	if ix.Len() != len(browseUniverse) {
		t.Errorf("indexed %d packages, want %d", ix.Len(), len(browseUniverse))
	}
	for _, c := range []struct {
		q    string
		n    int
		want string
	}{
		{"python3", 10, "python3 python3.11 python3-yaml ipython3"}, // prefix shortest first, then substring
		{"Python3 (>= 3.11)", 2, "python3 python3.11"},              // constraint ignored, limit kept
		{"mosq", 10, "mosquitto"},
		{"package drop", 10, "dropbear"}, // words of the short description
		{"age garden", 10, "garden"},
		{"arden", 10, "garden"},      // substring of a name
		{"zzz", 10, ""},              // nothing
		{"", 10, ""},                 // nothing asked
		{"libc6:amd64", 10, "libc6"}, // an architecture qualifier ignored
	} {
		if got := entryNames(ix.Search(c.q, c.n)); got != c.want {
			t.Errorf("Search(%q, %d) = %q, want %q", c.q, c.n, got, c.want)
		}
	}
	// The short description matches after names (archivetest describes each as "test package NAME").
	if got := entryNames(ix.Search("package", 3)); got != "dropbear garden ipython3" {
		t.Errorf("description search = %q", got)
	}
	e := ix.Search("mosquitto", 1)[0]
	if e.Version != "2.0.11-1.2" || e.Description != "test package mosquitto" || e.InstalledSize != 900<<10 || e.Size <= 0 {
		t.Errorf("entry %+v", e)
	}
}

func TestIndexEstimate(t *testing.T) {
	ix := browseIndex(t, archivetest.New(t, browseUniverse, nil), nil)
	ctx := context.Background()
	est, err := ix.Estimate(ctx, []string{"garden", "python3 (>= 3.11)"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(est.Packages); got != "dropbear=2022.83-1 garden=1.0 libc6=2.36-9 python3=3.11.2-1 python3.11=3.11.2-6" {
		t.Errorf("closure %s", got)
	}
	var dl int64
	for _, p := range est.Packages {
		dl += p.Size
	}
	if want := int64(300+4+12000+100+400) << 10; est.InstalledSize != want || est.Download != dl || dl == 0 {
		t.Errorf("installed %d (want %d), download %d (want %d)", est.InstalledSize, want, est.Download, dl)
	}

	_, err = ix.Estimate(ctx, []string{"mosquitto"}, Options{})
	var ue *UnsatisfiableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "mosquitto → libssl3 (>= 3.0.9)") || !strings.Contains(err.Error(), "3.0.8-1") {
		t.Errorf("unsatisfiable request: %v", err)
	}

	_, err = ix.Estimate(ctx, []string{"dropbear", "pyton3"}, Options{})
	var unk *UnknownPackageError
	if !errors.As(err, &unk) || unk.Name != "pyton3" || len(unk.Suggestions) == 0 || unk.Suggestions[0] != "python3" {
		t.Errorf("unknown package: %v", err)
	}
	if _, err := ix.Estimate(ctx, []string{"ssh-server"}, Options{}); err != nil {
		t.Errorf("virtual package: %v", err)
	}
	if _, err := ix.Estimate(ctx, []string{"python3 (>="}, Options{}); err == nil {
		t.Error("a broken request resolved")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ix.Estimate(cctx, []string{"python3"}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled estimate: %v", err)
	}
}

// The index cache loads the archive again with the mirror gone, drops indices unused for long,
// and a damaged cached index fails its hash check instead of being believed.
func TestIndexCacheOffline(t *testing.T) {
	ta := archivetest.New(t, browseUniverse, nil)
	dir := t.TempDir()
	stale := filepath.Join(dir, "by-hash", strings.Repeat("0", 64))
	os.MkdirAll(filepath.Dir(stale), 0o755)
	if err := os.WriteFile(stale, []byte("an index of last month"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	os.Chtimes(stale, old, old)
	hc := &http.Client{Transport: &IndexCache{Dir: dir}, Timeout: 30 * time.Second}
	first := browseIndex(t, ta, hc)
	if _, err := os.Stat(stale); err == nil {
		t.Error("an index unused for a month was kept")
	}
	seen := len(ta.Seen())
	again := browseIndex(t, ta, hc)
	if len(ta.Seen()) != seen {
		t.Errorf("a fresh cache asked the mirror again: %v", ta.Seen()[seen:])
	}
	ta.Close()
	offline := browseIndex(t, ta, &http.Client{Transport: &IndexCache{Dir: dir, MaxAge: time.Nanosecond}, Timeout: 30 * time.Second})
	if first.Len() != again.Len() || first.Len() != offline.Len() || offline.Len() == 0 {
		t.Errorf("packages: online %d, cached %d, offline %d", first.Len(), again.Len(), offline.Len())
	}
	hashed, _ := filepath.Glob(filepath.Join(dir, "by-hash", "*"))
	if len(hashed) == 0 {
		t.Fatal("no index cached by hash")
	}
	for _, f := range hashed {
		if err := os.WriteFile(f, []byte("not xz"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := (&Client{Sources: []Source{source(ta)}, Arches: []string{"amd64"}, HTTP: hc}).Load(ctx)
	if !errors.Is(err, ErrHashMismatch) {
		t.Errorf("damaged cache: %v", err)
	}
}

// BenchmarkIndexSearch measures one search (as typed on each keystroke) and one estimate over
// the host's bookworm main index (apt's lists, lz4-compressed).
func BenchmarkIndexSearch(b *testing.B) {
	lists, _ := filepath.Glob("/var/lib/apt/lists/*_dists_bookworm_main_binary-amd64_Packages.lz4")
	if len(lists) == 0 {
		b.Skip("no bookworm main list in /var/lib/apt/lists")
	}
	cmd := exec.Command("lz4", "-dc", lists[0])
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Skip("lz4:", err)
	}
	a := NewArchive("amd64")
	if err := a.Add(&Origin{Suite: "bookworm", Component: "main", Priority: 500}, out); err != nil {
		b.Fatal(err)
	}
	cmd.Wait()
	start := time.Now()
	ix := NewIndex(a)
	b.Logf("indexed %d packages in %v", ix.Len(), time.Since(start))
	for _, q := range []string{"p", "python3", "mosq", "zzzz", "server"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				ix.Search(q, 20)
			}
		})
	}
	b.Run("estimate", func(b *testing.B) { // the Build screen's line for the garden set
		for b.Loop() {
			if _, err := ix.Estimate(context.Background(), []string{"python3", "dropbear", "wpasupplicant", "mosquitto"}, Options{Base: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzIndexSearch: any query returns at most n distinct packages, and a query naming a package
// lists it first.
func FuzzIndexSearch(f *testing.F) {
	a := NewArchive("amd64")
	if err := a.Add(&Origin{Suite: "stable", Priority: 500}, bytes.NewReader(archivetest.PackagesText(browseUniverse))); err != nil {
		f.Fatal(err)
	}
	ix := NewIndex(a)
	for _, s := range []string{"python3", "py", "package drop", "libc6:amd64", "python3 (>= 3", "\n", "é", "ge\nte"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, q string, n int) {
		n = n % 50
		got := ix.Search(q, n)
		if len(got) > max(n, 0) {
			t.Fatalf("Search(%q, %d) returned %d", q, n, len(got))
		}
		seen := map[string]bool{}
		for _, e := range got {
			if seen[e.Name] {
				t.Fatalf("Search(%q) lists %s twice", q, e.Name)
			}
			seen[e.Name] = true
		}
		if _, ok := ix.Lookup(q); ok && n > 0 && got[0].Name != q {
			t.Fatalf("Search(%q) lists %s first", q, got[0].Name)
		}
	})
}
