package catalog

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A document Kiln writes reads back the same, and Imager's reader (Parse) accepts it once its URLs
// are absolute, as kiln serve serves it.
func TestDocumentRoundTrip(t *testing.T) {
	d := &Document{Imager: &Imager{Devices: []Device{{Name: "pc", Tags: []string{"pc"}}}},
		OSList: []OS{{Name: "tiny 1.0.0", URL: "images/tiny-1.0.0.img.zst", ExtractSize: 1 << 29,
			ExtractSHA256: "f2a1775c0d507809206b3c492e00a1f4c32e84889357793a62a62e929b04b964", InitFormat: "none", Devices: []string{"pc"}}}}
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadDocument(data)
	if err != nil || !reflect.DeepEqual(back, d) {
		t.Fatalf("read back %+v (%v)", back, err)
	}
	abs, _ := d.Absolute(&url.URL{Scheme: "http", Host: "127.0.0.1:8080", Path: "/"}).Marshal()
	c, err := Parse(abs)
	if err != nil || len(c.OS) != 1 || c.OS[0].URL != "http://127.0.0.1:8080/images/tiny-1.0.0.img.zst" ||
		c.OS[0].InitFormat != "none" || c.Filter("pc", "")[0].Name != "tiny 1.0.0" {
		t.Fatalf("parsed %+v (%v)\n%s", c, err, abs)
	}
	if _, err := ReadDocument([]byte(`{"os_list": 5}`)); err == nil {
		t.Error("a malformed document is accepted")
	}
}

func FuzzReadDocument(f *testing.F) {
	f.Add([]byte(`{"imager":{"devices":[{"name":"pc","tags":["pc"]}]},"os_list":[{"name":"a","url":"images/a.img.zst","extract_size":5}]}`))
	f.Add([]byte(`{"os_list":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ReadDocument(data)
		if err != nil {
			return
		}
		out, err := d.Absolute(&url.URL{Scheme: "http", Host: "h", Path: "/"}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ReadDocument(out); err != nil {
			t.Fatalf("a written document does not read back: %v", err)
		}
	})
}

// A local catalogue's relative image URLs name files under its directory, never outside it.
func TestLocalCatalogueRelativeURLs(t *testing.T) {
	dir := t.TempDir()
	doc := `{"os_list": [{"name": "in", "url": "images/a.img.zst"}, {"name": "out", "url": "../secret.img"},
	{"name": "abs", "url": "/etc/shadow"}]}`
	p := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.OS) != 1 || c.OS[0].URL != filepath.Join(dir, "images", "a.img.zst") || len(c.Warnings) != 2 {
		t.Fatalf("%+v", c)
	}
}
