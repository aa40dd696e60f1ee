package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/catalog"
)

// PublishImage compresses the image into the repository, lists it first in catalog.json (which
// Kiln's catalogue reader accepts), refuses other bytes under a published name and version, and
// leaves nothing behind for an image that does not match the build's sha256.
func TestPublishImage(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte("kiln disk image "), 1<<16)
	img := filepath.Join(t.TempDir(), "a.img")
	os.WriteFile(img, raw, 0o644)
	now := func() time.Time { return time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) }
	pub := func(version, sum string) (*PublishedImage, error) {
		return PublishImage(context.Background(), dir, DiskImage{Name: "tiny", Version: version, Board: "pc", Arch: "x86_64",
			Path: img, SHA256: sum, InitFormat: "none"}, Options{Now: now})
	}
	if _, err := pub("1.0.0", ""); err != nil {
		t.Fatal(err)
	}
	p, err := pub("1.1.0", "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, p.File))
	zr, _ := zstd.NewReader(f)
	var got bytes.Buffer
	if _, err := got.ReadFrom(zr); err != nil || !bytes.Equal(got.Bytes(), raw) {
		t.Fatalf("the compressed image does not decompress to the image (%v)", err)
	}
	zr.Close()
	f.Close()
	data, _ := os.ReadFile(filepath.Join(dir, CatalogFile))
	// Read as a local catalogue, the relative URLs name the files in the repository.
	c, err := catalog.Load(context.Background(), filepath.Join(dir, CatalogFile), catalog.Options{})
	if err != nil || len(c.OS) != 2 || c.OS[0].URL != filepath.Join(dir, p.File) || len(c.Warnings) != 0 {
		t.Fatalf("catalog.Load: %+v %v\n%s", c, err, data)
	}
	doc, _ := catalog.ReadDocument(data)
	if len(doc.OSList) != 2 || doc.OSList[0].Name != "tiny 1.1.0" || doc.OSList[0].ReleaseDate != "2026-12-02" ||
		doc.OSList[0].ExtractSize != int64(len(raw)) || doc.Imager == nil || len(doc.Imager.Devices) != 1 || doc.OSList[1].Devices[0] != "pc" {
		t.Fatalf("catalogue:\n%s", data)
	}
	if again, err := pub("1.1.0", p.Entry.ExtractSHA256); err != nil || !again.Unchanged {
		t.Fatalf("publishing the same image again: %+v %v", again, err)
	}
	os.WriteFile(img, append(raw, 1), 0o644)
	if _, err := pub("1.1.0", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("other bytes under a published version: %v", err)
	}
	if _, err := pub("1.2.0", p.Entry.ExtractSHA256); err == nil {
		t.Fatal("an image that does not match the manifest was published")
	}
	if _, err := os.Stat(filepath.Join(dir, ImagesDir, "tiny-1.2.0.img.zst")); err == nil {
		t.Error("the mismatching image was left in the repository")
	}
}

// BuildImage reads a build's manifest from its output directory or its update directory, declares
// cloudinit only for images with the cloud-init package, and refuses file names leaving the build.
func TestBuildImage(t *testing.T) {
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "update"), 0o755)
	write := func(manifest string) {
		if err := os.WriteFile(filepath.Join(out, "manifest.json"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"name": "tiny", "version": "1.0.0", "arch": "x86_64", "recipe": {"path": "/r/kiln.toml"},
		"image": {"file": "tiny.img", "sha256": "ab", "bmap": "tiny.img.bmap"}, "packages": [{"name": "cloud-init"}]}`)
	for _, dir := range []string{out, filepath.Join(out, "update")} {
		img, err := BuildImage(dir, "pc")
		if err != nil || img == nil || img.Path != filepath.Join(out, "tiny.img") || img.Bmap != filepath.Join(out, "tiny.img.bmap") ||
			img.InitFormat != "cloudinit" || img.Board != "pc" || img.Name != "tiny" {
			t.Fatalf("%s: %+v %v", dir, img, err)
		}
	}
	write(`{"name": "tiny", "version": "1.0.0", "image": {"file": "tiny.img"}}`)
	if img, err := BuildImage(out, ""); err != nil || img.InitFormat != "none" || img.Bmap != "" {
		t.Fatalf("without cloud-init: %+v %v", img, err)
	}
	write(`{"name": "tiny", "version": "1.0.0", "image": {"file": "../../etc/passwd"}}`)
	if _, err := BuildImage(out, ""); err == nil {
		t.Fatal("an image path outside the build was accepted")
	}
	if img, err := BuildImage(t.TempDir(), ""); img != nil || err != nil {
		t.Fatalf("no manifest: %+v %v", img, err)
	}
}
