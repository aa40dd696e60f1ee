package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func names(list []OS) string {
	var out []string
	for _, o := range list {
		out = append(out, o.Name)
	}
	return strings.Join(out, "; ")
}

// The fixture in Imager's schema, served on 127.0.0.1 with a relative subitems_url: nested
// folders flatten with their path, the fetched folder's relative URLs resolve against its own
// document, malformed entries are left out with a warning.
func TestLoadImagerCatalogue(t *testing.T) {
	srv := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Load(ctx, srv.URL+"/os_list.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(c.OS), "Raspberry Pi OS (64-bit); Ubuntu Server 24.04.1 LTS (64-bit); Kiln demo image; Bootloader (Pi 4 family)"; got != want {
		t.Fatalf("images %q, want %q", got, want)
	}
	if len(c.Warnings) != 2 || !strings.Contains(strings.Join(c.Warnings, "\n"), "Broken entry") || !strings.Contains(strings.Join(c.Warnings, "\n"), "Erase") {
		t.Errorf("warnings %q", c.Warnings)
	}
	ubuntu := c.OS[1]
	if ubuntu.Title() != "Other general-purpose OS › Ubuntu › Ubuntu Server 24.04.1 LTS (64-bit)" || ubuntu.InitFormat != "cloudinit-rpi" || ubuntu.ExtractSize != 3803710464 {
		t.Errorf("ubuntu %+v", ubuntu)
	}
	pios := c.OS[0]
	if pios.DownloadSHA256 != "43d150e7901583919e4eb1f0fa83fe0363af2d1e9777a5bb707d696d535e2599" || pios.DownloadSize != 1232084908 || pios.ReleaseDate != "2024-11-19" {
		t.Errorf("pi os %+v", pios)
	}
	if demo := c.OS[2]; demo.URL != srv.URL+"/../images/kiln-demo.img.gz" && demo.URL != srv.URL+"/images/kiln-demo.img.gz" {
		t.Errorf("relative url resolved to %s", demo.URL)
	}
	if len(c.Devices) != 3 || c.Devices[0].Icon != srv.URL+"/icons/pi5.png" || !c.Devices[1].Default {
		t.Errorf("devices %+v", c.Devices)
	}
	for _, tc := range []struct{ device, search, want string }{
		{"", "", "Raspberry Pi OS (64-bit); Ubuntu Server 24.04.1 LTS (64-bit); Kiln demo image; Bootloader (Pi 4 family)"},
		{"Raspberry Pi 5", "", "Raspberry Pi OS (64-bit); Ubuntu Server 24.04.1 LTS (64-bit)"}, // exclusive: untagged images hidden
		{"pi4", "", "Raspberry Pi OS (64-bit); Ubuntu Server 24.04.1 LTS (64-bit); Kiln demo image; Bootloader (Pi 4 family)"},
		{"pi4-32bit", "", "Kiln demo image; Bootloader (Pi 4 family)"},
		{"pi4", "ubuntu", "Ubuntu Server 24.04.1 LTS (64-bit)"},
		{"", "EEPROM", "Bootloader (Pi 4 family)"},
		{"pi2", "", "Kiln demo image"},
		{"No filtering", "", "Raspberry Pi OS (64-bit); Ubuntu Server 24.04.1 LTS (64-bit); Kiln demo image; Bootloader (Pi 4 family)"},
	} {
		if got := names(c.Filter(tc.device, tc.search)); got != tc.want {
			t.Errorf("Filter(%q, %q) = %q, want %q", tc.device, tc.search, got, tc.want)
		}
	}
	if o, err := c.Find("ubuntu server"); err != nil || o.Name != ubuntu.Name {
		t.Errorf("Find: %v %v", o.Name, err)
	}
	if _, err := c.Find("Raspberry"); err != nil {
		t.Errorf("Find a unique substring: %v", err)
	}
	if _, err := c.Find("(64-bit)"); err == nil || !strings.Contains(err.Error(), "matches 2") {
		t.Errorf("Find ambiguous: %v", err)
	}
	if _, err := c.Find("Windows"); err == nil {
		t.Error("Find of a missing image succeeded")
	}
}

func TestLoadFile(t *testing.T) {
	c, err := Load(context.Background(), "testdata/os_list.json", Options{NoFetch: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.OS) != 3 || !strings.Contains(strings.Join(c.Warnings, "\n"), "community.json") {
		t.Fatalf("%d images, warnings %q", len(c.OS), c.Warnings)
	}
	// Fetching: the folder beside the file is read; its relative image URL is not http(s).
	c, err = Load(context.Background(), "testdata/os_list.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings, "\n"); len(c.OS) != 3 || !strings.Contains(w, "Kiln demo image: url") {
		t.Fatalf("%d images, warnings %q", len(c.OS), c.Warnings)
	}
}

func TestMalformed(t *testing.T) {
	for name, data := range map[string]string{
		"truncated":  "",
		"not imager": `{"images": []}`,
		"wrong type": `{"os_list": {"name": "x"}}`,
		"bad size":   `{"os_list": [{"name": "x", "url": "https://a.invalid/x.img", "extract_size": -5}]}`,
	} {
		if name == "truncated" {
			b, _ := os.ReadFile("testdata/malformed.json")
			data = string(b)
		}
		c, err := Parse([]byte(data))
		if name == "bad size" {
			if err != nil || len(c.OS) != 0 || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "extract_size") {
				t.Errorf("%s: %v, %+v", name, err, c)
			}
			continue
		}
		if !errors.Is(err, ErrCatalog) {
			t.Errorf("%s: got %v, want ErrCatalog", name, err)
		}
	}
}

// Hostile catalogues: a subitems_url chain that never ends, a document larger than the limit,
// nesting deeper than the limit.
func TestHostileLimits(t *testing.T) {
	var fetched atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/loop"):
			n := fetched.Add(1)
			fmt.Fprintf(w, `{"os_list": [{"name": "deeper", "subitems_url": "/loop%d"}]}`, n)
		case r.URL.Path == "/huge":
			w.Write([]byte(`{"os_list": [`))
			for range MaxDocument / 10 {
				w.Write([]byte(`{"name":"x"},`))
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Load(ctx, srv.URL+"/loop0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := fetched.Load(); n > MaxDepth+1 {
		t.Errorf("fetched %d documents, beyond the depth limit %d", n, MaxDepth)
	}
	if !strings.Contains(strings.Join(c.Warnings, "\n"), "deeper than") {
		t.Errorf("warnings %q", c.Warnings)
	}
	if _, err := Load(ctx, srv.URL+"/huge", Options{}); !errors.Is(err, ErrCatalog) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge: %v", err)
	}
	deep := strings.Repeat(`{"name":"f","subitems":[`, MaxDepth+2) + strings.Repeat(`]}`, MaxDepth+2)
	if _, err := Parse([]byte(`{"os_list":[` + deep + `]}`)); !errors.Is(err, ErrCatalog) {
		t.Errorf("deep: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/os_list.json", "testdata/community.json", "testdata/malformed.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"name":"a","url":"http://h/x","devices":["pi4-64bit"]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		for _, o := range c.OS {
			if !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
				t.Fatalf("kept an image with URL %q", o.URL)
			}
			if o.ExtractSize < 0 || o.DownloadSize < 0 || (o.ExtractSHA256 != "" && len(o.ExtractSHA256) != 64) {
				t.Fatalf("kept %+v", o)
			}
		}
		c.Filter("pi4", "a")
		c.Find("a")
	})
}

// A local catalogue reads documents beside it, never outside its directory.
func TestLocalSubitemsStayInDirectory(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "cat"), 0o755)
	os.WriteFile(filepath.Join(dir, "secret.json"), []byte(`{"os_list":[{"name":"secret","url":"https://a.invalid/s.img"}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "cat", "sub.json"), []byte(`{"os_list":[{"name":"beside","url":"https://a.invalid/b.img"}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "cat", "os_list.json"), []byte(`{"os_list":[
		{"name":"up","subitems_url":"../secret.json"},
		{"name":"abs","subitems_url":"file:///etc/passwd"},
		{"name":"here","subitems_url":"sub.json"}]}`), 0o644)
	c, err := Load(context.Background(), filepath.Join(dir, "cat", "os_list.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if names(c.OS) != "beside" || len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], "outside") || !strings.Contains(c.Warnings[1], "outside") {
		t.Fatalf("images %q, warnings %q", names(c.OS), c.Warnings)
	}
}
