package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
)

// kiln publish ships the build's disk image (zstd, with its block map) and lists it in the
// repository's catalogue; kiln serve serves the catalogue with absolute URLs, kiln catalog lists
// it, and kiln flash --catalog --os writes the image onto a drive byte for byte.
func TestPublishedImageCatalogue(t *testing.T) {
	testenv.Tool(t, "cmp")
	res := testimage.Build(t, "")
	out := filepath.Dir(res.Manifest)
	env, stdout, stderr := otaEnv(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, out}); code != 0 {
		t.Fatalf("kiln publish: exit %d\n%s", code, stderr)
	}
	file := "images/kiln-tiny-1.0.0.img.zst"
	if !strings.Contains(stdout.String(), "image    "+file) {
		t.Fatalf("publish output: %s", stdout)
	}
	if b, err := exec.Command("cmp", res.Bmap, filepath.Join(repoDir, "images", "kiln-tiny-1.0.0.img.bmap")).CombinedOutput(); err != nil {
		t.Errorf("block map beside the image: %v %s", err, b)
	}
	var doc catalog.Document
	data, _ := os.ReadFile(filepath.Join(repoDir, "catalog.json"))
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.OSList) != 1 {
		t.Fatalf("catalog.json: %v\n%s", err, data)
	}
	e := doc.OSList[0]
	fi, _ := os.Stat(filepath.Join(repoDir, file))
	if e.URL != file || e.ExtractSize != res.ImageSize || e.ExtractSHA256 != res.ImageSHA256 || fi == nil ||
		e.DownloadSize != fi.Size() || e.DownloadSHA256 != testimage.SHA256(t, filepath.Join(repoDir, file)) ||
		e.InitFormat != "none" || e.ReleaseDate == "" {
		t.Fatalf("catalogue entry %+v", e)
	}
	// Publishing again changes nothing.
	stdout.Reset()
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, out}); code != 0 || strings.Contains(stdout.String(), "image ") {
		t.Fatalf("publish again: exit %d\n%s%s", code, stdout, stderr)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	senv := *env
	var serveOut, serveErr lockedBuffer
	senv.Stdout, senv.Stderr = &serveOut, &serveErr
	senv.Log = logrus.New()
	senv.Log.SetOutput(&serveErr)
	done := make(chan int, 1)
	go func() { done <- run(ctx, &senv, []string{"serve", "--repo", repoDir, "--addr", addr, "--no-mdns"}) }()
	defer func() { cancel(); <-done }()
	src := "http://" + addr + "/catalog.json"
	var resp *http.Response
	for range 100 {
		if resp, err = http.Get(src); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"url": "http://`+addr+"/"+file+`"`) {
		t.Fatalf("served catalogue (%s):\n%s", resp.Status, body)
	}

	cenv, cout, cerr := flashEnv("")
	if code := run(ctx, cenv, []string{"catalog", "--source", src}); code != 0 || !strings.Contains(cout.String(), "kiln-tiny 1.0.0") {
		t.Fatalf("kiln catalog: exit %d\n%s%s", code, cout, cerr)
	}
	dev := loopDrive(t, res.ImageSize, false)
	fenv, fout, ferr := flashEnv("")
	if code := run(ctx, fenv, []string{"flash", "--catalog", src, "--os", "kiln-tiny 1.0.0", "--device", dev, "--yes"}); code != 0 {
		t.Fatalf("kiln flash: exit %d\n%s%s", code, fout, ferr)
	}
	if !strings.Contains(fout.String(), "sha256 matches") {
		t.Errorf("flash output: %s", fout)
	}
	if b, err := exec.Command("cmp", "-n", strconv.FormatInt(res.ImageSize, 10), dev, res.Image).CombinedOutput(); err != nil {
		t.Fatalf("cmp drive image: %v %s", err, b)
	}
}

// A repository published without disk images (as before they were) serves no catalogue, and says
// why.
func TestRepositoryWithoutImages(t *testing.T) {
	env, _, stderr := otaEnv(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, bundle(t, "1.0.0", []byte("payload"))}); code != 0 {
		t.Fatalf("kiln publish: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "catalog.json")); err == nil {
		t.Fatal("a catalogue without images")
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	senv := *env
	var buf lockedBuffer
	senv.Stdout, senv.Stderr, senv.Log = &buf, &buf, logrus.New()
	senv.Log.SetOutput(&buf)
	done := make(chan int, 1)
	go func() { done <- run(ctx, &senv, []string{"serve", "--repo", repoDir, "--addr", addr, "--no-mdns"}) }()
	defer func() { cancel(); <-done }()
	var resp *http.Response
	var err error
	for range 100 {
		if resp, err = http.Get("http://" + addr + "/catalog.json"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "kiln publish") {
		t.Fatalf("catalogue of a repository without images: %s %s", resp.Status, body)
	}
	cenv, _, cerr := flashEnv("")
	if code := run(ctx, cenv, []string{"catalog", "--source", "http://" + addr + "/catalog.json"}); code == 0 || !strings.Contains(cerr.String(), "404") {
		t.Errorf("kiln catalog: exit %d: %s", code, cerr)
	}
}

// lockedBuffer collects a server's output written from its goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
