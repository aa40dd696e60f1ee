package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
	"github.com/kilnproject/kiln/internal/testenv"
)

func hexOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// catalogueServer serves an xz image and an Imager catalogue listing it on 127.0.0.1; wrongSum
// publishes a wrong image sha256.
func catalogueServer(t *testing.T, img string, wrongSum bool) (*httptest.Server, []byte) {
	t.Helper()
	xz := testenv.Tool(t, "xz")
	packed, err := exec.Command(xz, "-c", "-1", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(img)
	extract := hexOf(raw)
	if wrongSum {
		extract = strings.Repeat("0", 64)
	}
	cat := fmt.Sprintf(`{"imager": {"devices": [{"name": "Raspberry Pi 4", "tags": ["pi4-64bit"]}]},
	"os_list": [{"name": "Test OS", "subitems": [{"name": "Test OS Lite", "url": "/os.img.xz",
	"extract_size": %d, "extract_sha256": %q, "image_download_size": %d, "image_download_sha256": %q,
	"devices": ["pi4-64bit"], "release_date": "2026-01-02"}]},
	{"name": "Other board OS", "url": "/other.img", "devices": ["pi5-64bit"]}]}`, len(raw), extract, len(packed), hexOf(packed))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/os_list.json":
			w.Write([]byte(cat))
		case "/os.img.xz":
			http.ServeContent(w, r, "os.img.xz", time.Time{}, strings.NewReader(string(packed)))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, packed
}

func TestCatalogCommand(t *testing.T) {
	srv, _ := catalogueServer(t, testImageFile(t, 1<<20), false)
	env, stdout, stderr := flashEnv("")
	if code := run(t.Context(), env, []string{"catalog", "--source", srv.URL + "/os_list.json", "--device", "Raspberry Pi 4"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out := stdout.String()
	if !strings.Contains(out, "Test OS Lite") || strings.Contains(out, "Other board OS") || !strings.Contains(out, "2026-01-02") {
		t.Errorf("listing:\n%s", out)
	}
	env, stdout, stderr = flashEnv("")
	if code := run(t.Context(), env, []string{"catalog", "--source", srv.URL + "/os_list.json", "--search", "board", "--json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct{ Result []catalog.OS }
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Result) != 1 || res.Result[0].URL != srv.URL+"/other.img" {
		t.Errorf("json %s: %v", stdout, err)
	}
	env, _, stderr = flashEnv("")
	if code := run(t.Context(), env, []string{"catalog", "--source", filepath.Join(t.TempDir(), "none.json")}); code == 0 || !strings.Contains(stderr.String(), "none.json") {
		t.Errorf("missing file: exit %d, %s", code, stderr)
	}
}

// kiln flash --catalog --os streams the catalogue's image from its URL onto a loop drive and
// checks both published checksums; a catalogue with a wrong checksum makes the flash fail.
func TestFlashFromCatalogue(t *testing.T) {
	img := testImageFile(t, 3<<20+512)
	for _, wrong := range []bool{false, true} {
		t.Run(fmt.Sprint("wrong sum ", wrong), func(t *testing.T) {
			srv, _ := catalogueServer(t, img, wrong)
			dev := loopDrive(t, 8<<20, false)
			env, stdout, stderr := flashEnv("")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			code := run(ctx, env, []string{"flash", "--catalog", srv.URL + "/os_list.json", "--os", "lite", "--device", dev, "--yes"})
			if wrong {
				if code == 0 || !strings.Contains(stderr.String(), "sha256") || !strings.Contains(stderr.String(), "partly") {
					t.Fatalf("exit %d with a wrong published sha256:\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout.String(), "written and verified") || !strings.Contains(stdout.String(), "sha256 matches") {
				t.Errorf("stdout: %s", stdout)
			}
			size := fmt.Sprint(3<<20 + 512)
			if out, err := exec.Command("cmp", "-n", size, dev, img).CombinedOutput(); err != nil {
				t.Fatalf("cmp: %v %s", err, out)
			}
		})
	}
}

func TestFlashSourceFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"flash", "--image", "a.img", "--catalog", "c.json", "--os", "x", "--device", "/dev/null"},
		{"flash", "--catalog", "c.json", "--device", "/dev/null"},
		{"flash", "--image", "a.img", "--os", "x", "--device", "/dev/null"},
		{"flash", "--image", "a.img", "--sha256", "abc", "--device", "/dev/null"},
	} {
		env, _, stderr := flashEnv("")
		if code := run(t.Context(), env, args); code == 0 {
			t.Errorf("%v: exit 0", args)
		} else if stderr.Len() == 0 {
			t.Errorf("%v: no message", args)
		}
	}
}

// The catalogue's init_format reaches the customiser: an image whose boot partition shows no
// cloud-init files is customised as the catalogue declares; --init-format overrides it.
func TestFlashCatalogueInitFormat(t *testing.T) {
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Plain)
	raw, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	cat := fmt.Sprintf(`{"os_list": [{"name": "Plain cloud OS", "url": "/plain.img", "extract_size": %d,
	"extract_sha256": %q, "init_format": "cloudinit"}]}`, len(raw), hexOf(raw))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/os_list.json":
			w.Write([]byte(cat))
		case "/plain.img":
			http.ServeContent(w, r, "plain.img", time.Time{}, strings.NewReader(string(raw)))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{nil, "first-boot settings written for cloudinit (declared by the catalogue)"},
		{[]string{"--init-format", "none"}, "flashed unchanged"},
	} {
		dev := loopDrive(t, int64(len(raw)), false)
		env, stdout, stderr := flashEnv("")
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		args := append([]string{"flash", "--catalog", srv.URL + "/os_list.json", "--os", "plain", "--device", dev, "--yes",
			"--hostname", "plain-one"}, c.extra...)
		code := run(ctx, env, args)
		cancel()
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.extra, code, stderr)
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, c.want) {
			t.Errorf("%v: output lacks %q:\n%s", c.extra, c.want, out)
		}
	}
}
