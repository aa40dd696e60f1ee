package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
)

// CatalogFile is the repository's OS catalogue (Raspberry Pi Imager's schema) listing the
// flashable disk images published with the updates; ImagesDir holds the images.
const (
	CatalogFile = "catalog.json"
	ImagesDir   = "images"
)

// PhaseCompress is the progress phase of compressing a disk image into the repository.
const PhaseCompress = "compress"

// DiskImage is a build's flashable disk image, published beside its update.
type DiskImage struct {
	Name, Version string
	Board, Arch   string
	Description   string
	Path          string // the raw image
	SHA256        string // the image's sha256 as the build recorded it ("": computed)
	Bmap          string // its block map, "" when there is none
	// InitFormat is how the image takes first-boot settings written at flash time ("cloudinit"
	// when it runs cloud-init, "none" when it does not).
	InitFormat  string
	ReleaseDate string // YYYY-MM-DD; default: today
}

// BuildImage describes the disk image of the build whose output directory (or its update
// directory) is dir, from its manifest.json; nil without a manifest or disk image (an update
// bundle alone). board is the update bundle's board.
func BuildImage(dir, board string) (*DiskImage, error) {
	p := filepath.Join(dir, "manifest.json")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) && filepath.Base(filepath.Clean(dir)) == "update" {
		dir = filepath.Dir(filepath.Clean(dir))
		p = filepath.Join(dir, "manifest.json")
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The manifest fields a catalogue entry needs (assembler.Manifest has them all).
	var m struct {
		Name, Version, Arch string
		Recipe              struct{ Path string }
		Image               struct{ File, SHA256, Bmap string }
		Packages            []struct{ Name string }
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if m.Image.File == "" {
		return nil, nil
	}
	if m.Image.File != filepath.Base(m.Image.File) || (m.Image.Bmap != "" && m.Image.Bmap != filepath.Base(m.Image.Bmap)) {
		return nil, fmt.Errorf("read %s: image file names must be plain file names", p)
	}
	img := &DiskImage{Name: m.Name, Version: m.Version, Board: board, Arch: m.Arch,
		Description: fmt.Sprintf("Kiln image %s %s (%s) built from %s", m.Name, m.Version, m.Arch, filepath.Base(m.Recipe.Path)),
		Path:        filepath.Join(dir, m.Image.File), SHA256: m.Image.SHA256, InitFormat: "none"}
	if m.Image.Bmap != "" {
		img.Bmap = filepath.Join(dir, m.Image.Bmap)
	}
	// Settings written at flash time take effect only in images that run cloud-init.
	for _, pk := range m.Packages {
		if pk.Name == "cloud-init" {
			img.InitFormat = "cloudinit"
		}
	}
	return img, nil
}

// PublishedImage is what PublishImage wrote.
type PublishedImage struct {
	Entry     catalog.OS // the catalogue entry (URL relative to the catalogue)
	File      string     // the compressed image, relative to the repository
	Unchanged bool       // the same image was already published
}

// imageFile is the compressed image's name: the recipe name and version, as a user downloading
// it expects.
func imageFile(name, version string) string { return name + "-" + version + ".img.zst" }

// PublishImage compresses img (zstd) into the repository's images directory, copies its block
// map beside it and lists it first in the repository's catalogue, which kiln serve serves.
// Publishing the same image again changes nothing; another image under the same name and version
// fails with ErrExists.
func PublishImage(ctx context.Context, dir string, img DiskImage, opts Options) (*PublishedImage, error) {
	fail := func(err error) (*PublishedImage, error) {
		return nil, fmt.Errorf("publish the disk image of %s %s to %s: %w", img.Name, img.Version, dir, err)
	}
	if img.Name == "" || img.Version == "" || strings.ContainsAny(img.Name+img.Version, `/\`) || strings.HasPrefix(img.Name, ".") {
		return fail(errors.New("name and version must be plain words"))
	}
	unlock, err := lock(dir)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	doc, err := readCatalog(dir)
	if err != nil {
		return fail(err)
	}
	file := path.Join(ImagesDir, imageFile(img.Name, img.Version))
	if img.SHA256 == "" {
		if img.SHA256, _, err = hashFile(ctx, img.Path, opts.Progress); err != nil {
			return fail(err)
		}
	}
	for _, o := range doc.OSList {
		if o.URL != file {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file))); err == nil && strings.EqualFold(o.ExtractSHA256, img.SHA256) {
			return &PublishedImage{Entry: o, File: file, Unchanged: true}, nil
		}
		return fail(fmt.Errorf("%w: %s (bump the version in the recipe and rebuild)", ErrExists, file))
	}
	if err := os.MkdirAll(filepath.Join(dir, ImagesDir), 0o755); err != nil {
		return fail(err)
	}
	e := catalog.OS{Name: img.Name + " " + img.Version, Description: img.Description, URL: file,
		ReleaseDate: img.ReleaseDate, InitFormat: img.InitFormat}
	if e.ReleaseDate == "" {
		e.ReleaseDate = opts.now().Format("2006-01-02")
	}
	if img.Board != "" {
		e.Devices = []string{img.Board}
	}
	if e.ExtractSize, e.ExtractSHA256, e.DownloadSize, e.DownloadSHA256, err = compress(ctx, filepath.Join(dir, filepath.FromSlash(file)), img.Path, opts.Progress); err != nil {
		return fail(err)
	}
	if !strings.EqualFold(img.SHA256, e.ExtractSHA256) {
		os.Remove(filepath.Join(dir, filepath.FromSlash(file)))
		return fail(fmt.Errorf("%s does not match the build's manifest (sha256 %s, expected %s): rebuild the image", img.Path, e.ExtractSHA256, img.SHA256))
	}
	if img.Bmap != "" {
		bm := strings.TrimSuffix(file, ".zst") + ".bmap" // where bmaptool and kiln flash look
		if err := copyFile(ctx, filepath.Join(dir, filepath.FromSlash(bm)), img.Bmap); err != nil {
			return fail(err)
		}
	}
	doc.OSList = slices.Insert(doc.OSList, 0, e)
	if img.Board != "" {
		if doc.Imager == nil {
			doc.Imager = &catalog.Imager{}
		}
		if !slices.ContainsFunc(doc.Imager.Devices, func(d catalog.Device) bool { return d.Name == img.Board }) {
			doc.Imager.Devices = append(doc.Imager.Devices, catalog.Device{Name: img.Board, Tags: []string{img.Board},
				Description: "Kiln images for the " + img.Board + " board"})
		}
	}
	data, err := doc.Marshal()
	if err != nil {
		return fail(err)
	}
	if err := atomicWrite(filepath.Join(dir, CatalogFile), data); err != nil {
		return fail(err)
	}
	return &PublishedImage{Entry: e, File: file}, nil
}

// readCatalog reads the repository's catalogue, or returns an empty one when there is none yet
// (repositories published before disk images were).
func readCatalog(dir string) (*catalog.Document, error) {
	data, err := os.ReadFile(filepath.Join(dir, CatalogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &catalog.Document{}, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := catalog.ReadDocument(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (move it away to start a new one)", CatalogFile, err)
	}
	return doc, nil
}

// compress writes src zstd-compressed to dst (atomically) and returns the sizes and sha256 sums
// of the raw and the compressed bytes.
func compress(ctx context.Context, dst, src string, pf progress.Func) (rawSize int64, rawSum string, size int64, sum string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, "", 0, "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, "", 0, "", err
	}
	out, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return 0, "", 0, "", err
	}
	defer out.Abort()
	zh := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, zh)}
	zw, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return 0, "", 0, "", err
	}
	rh := sha256.New()
	n, err := io.Copy(io.MultiWriter(zw, rh), &progress.Reader{R: ctxReader{ctx, in}, Phase: PhaseCompress, Total: fi.Size(), F: pf})
	if err != nil {
		zw.Close()
		return 0, "", 0, "", fmt.Errorf("compress %s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		return 0, "", 0, "", fmt.Errorf("compress %s: %w", src, err)
	}
	if err := out.Commit(); err != nil {
		return 0, "", 0, "", err
	}
	return n, hex.EncodeToString(rh.Sum(nil)), cw.n, hex.EncodeToString(zh.Sum(nil)), nil
}

// copyFile copies src to dst atomically.
func copyFile(ctx context.Context, dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := atomicfile.WriteFrom(dst, ctxReader{ctx, in}, 0o644); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
