package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/flasher"
)

// FlashPlan is what `kiln flash` is about to write, for the flags of flashExtensions to adjust.
type FlashPlan struct {
	Image   string
	Catalog string      // the catalogue the image was picked from, if any
	OS      *catalog.OS // its entry
	Options *flasher.Options
}

// flashExtensions add flags to `kiln flash`: each registers its flags on the flag set and returns
// a function that applies them to the plan once the flags are parsed.
var flashExtensions []func(fs *flag.FlagSet) func(*FlashPlan) error

// imageFlags choose the image: a file, a URL, or an entry of a catalogue.
type imageFlags struct {
	image, catalog, os, sha256 *string
	cache                      *bool
}

func addImageFlags(fs *flag.FlagSet) *imageFlags {
	return &imageFlags{
		image:   fs.String("image", "", "image to write: a file or an http(s) URL; .img/.iso, or compressed .gz/.xz/.zst/.bz2/.zip"),
		catalog: fs.String("catalog", "", "OS catalogue (Raspberry Pi Imager's JSON, a URL or a file) to pick the image from with --os"),
		os:      fs.String("os", "", "the catalogue's image to write (its name, or a unique part of it; see 'kiln catalog')"),
		sha256:  fs.String("sha256", "", "published sha256 of the image: of the file as downloaded or of the uncompressed image; the flash fails unless it matches"),
		cache:   fs.Bool("cache", false, "keep a download whose sha256 was confirmed in $KILN_CACHE/downloads and reuse it"),
	}
}

// plan resolves the image and sets the checksum, size and download options.
func (s *imageFlags) plan(ctx context.Context, env *Env, opts *flasher.Options) (*FlashPlan, error) {
	p := &FlashPlan{Image: *s.image, Options: opts}
	switch {
	case *s.catalog != "" && *s.image != "":
		return nil, fmt.Errorf("%w: give --image or --catalog with --os, not both", errUsage)
	case *s.catalog != "":
		if *s.os == "" {
			return nil, fmt.Errorf("%w: --catalog needs --os NAME (list the names with 'kiln catalog --source %s')", errUsage, *s.catalog)
		}
		c, err := catalog.Load(ctx, *s.catalog, catalog.Options{})
		if err != nil {
			return nil, err
		}
		o, err := c.Find(*s.os)
		if err != nil {
			return nil, err
		}
		p.Image, p.Catalog, p.OS = o.URL, *s.catalog, &o
		opts.DownloadSHA256, opts.ImageSHA256, opts.SizeHint = o.DownloadSHA256, o.ExtractSHA256, o.ExtractSize
	case *s.image == "":
		return nil, fmt.Errorf("%w: --image (or --catalog and --os) and at least one --device are required", errUsage)
	case *s.os != "":
		return nil, fmt.Errorf("%w: --os picks from a catalogue: add --catalog SRC", errUsage)
	}
	opts.SHA256 = *s.sha256
	if *s.cache {
		dir, err := assembler.DefaultCache()
		if err != nil {
			return nil, err
		}
		opts.Fetch.CacheDir = filepath.Join(dir, "downloads")
	}
	return p, nil
}
