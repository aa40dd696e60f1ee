package flasher

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/units"
)

// ErrChecksum: the image's sha256 is not the published one. It is found once the image was read in
// full, so the drive holds all of it but the first MiB, and does not boot.
var ErrChecksum = errors.New("sha256 mismatch")

// sourceError marks err as the image's failure (ErrSource). A failed download or checksum says
// what happened in its own words; other errors are prefixed with ErrSource's.
func sourceError(err error) error {
	if errors.Is(err, source.ErrDownload) || errors.Is(err, ErrChecksum) {
		return &imageError{err}
	}
	return fmt.Errorf("%w: %w", ErrSource, err)
}

type imageError struct{ err error }

func (e *imageError) Error() string   { return e.err.Error() }
func (e *imageError) Unwrap() []error { return []error{ErrSource, e.err} }

// checkSums normalises the expected checksums and makes the writer hash the image when one is given.
func checkSums(o *Options) error {
	for _, p := range []*string{&o.SHA256, &o.DownloadSHA256, &o.ImageSHA256} {
		*p = strings.ToLower(strings.TrimSpace(*p))
		if b, err := hex.DecodeString(*p); *p != "" && (err != nil || len(b) != 32) {
			return fmt.Errorf("flash: %q is not a sha256 (64 hex digits)", *p)
		}
		if *p != "" {
			o.HashImage = true
		}
	}
	return nil
}

// cachedImage returns the cached copy of a URL image whose download checksum is known and cached.
func cachedImage(image string, o Options) string {
	if !source.IsURL(image) || o.Fetch.CacheDir == "" {
		return image
	}
	for _, sum := range []string{o.DownloadSHA256, o.SHA256} {
		if sum == "" {
			continue
		}
		p := filepath.Join(o.Fetch.CacheDir, sum)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			o.Log.WithField("url", image).WithField("file", p).Info("using the cached download")
			return p
		}
	}
	return image
}

// verifySums compares the checksums of what was written with the expected ones. imageSum is the
// sha256 of the uncompressed image ("" when it was read by ranges). A confirmed download is kept
// in the download cache.
func (j *Job) verifySums(ctx context.Context, imageSum string) (downloadSum string, err error) {
	o := j.opts
	if o.SHA256 == "" && o.DownloadSHA256 == "" && o.ImageSHA256 == "" {
		return "", nil
	}
	j.sumMu.Lock()
	defer j.sumMu.Unlock()
	download := func() (string, error) {
		if j.downloadSum == "" {
			s, err := j.Image.DownloadSHA256(ctx)
			if err != nil {
				return "", sourceError(err)
			}
			j.downloadSum = s
		}
		return j.downloadSum, nil
	}
	mismatch := func(what, got, want string) error {
		return sourceError(fmt.Errorf("%w: the sha256 of %s %s is %s, not the expected %s; the file is not the published one or was damaged in transit",
			ErrChecksum, what, j.Image.Path, got, want))
	}
	confirmed := false
	if want := o.ImageSHA256; want != "" {
		got := imageSum
		if got == "" && j.Image.Format == source.Raw {
			if got, err = download(); err != nil {
				return "", err
			}
		}
		if got == "" {
			return "", sourceError(fmt.Errorf("%w: the image was read by its block map ranges, so its sha256 could not be computed; flash with --no-bmap", ErrChecksum))
		}
		if got != want {
			return "", mismatch("the uncompressed image", got, want)
		}
		confirmed = j.Image.Format == source.Raw
	}
	if want := o.DownloadSHA256; want != "" {
		got, err := download()
		if err != nil {
			return "", err
		}
		if got != want {
			return "", mismatch("the downloaded file", got, want)
		}
		confirmed = true
	}
	if want := o.SHA256; want != "" && imageSum != want {
		got, err := download()
		if err != nil {
			return "", err
		}
		if got != want {
			what := "the file"
			if imageSum != "" && j.Image.Format != source.Raw {
				what = fmt.Sprintf("the uncompressed image is %s and of the file", imageSum)
			}
			return "", mismatch(what, got, want)
		}
		confirmed = true
	} else if want != "" && j.Image.Format == source.Raw {
		confirmed = true
	}
	sum := j.downloadSum
	if sum == "" && j.Image.Format == source.Raw {
		sum = imageSum
	}
	if confirmed && sum != "" {
		if err := j.Image.Keep(sum); err != nil {
			o.Log.WithError(err).Warn("could not keep the download in the cache")
		}
	}
	return sum, nil
}

// downloadNote describes the download's progress for the writing meter, or "".
func (j *Job) downloadNote() string {
	done, total := j.Image.Downloaded()
	if total <= 0 {
		return ""
	}
	return fmt.Sprintf("downloaded %s of %s", units.Decimal(done), units.Decimal(total))
}
