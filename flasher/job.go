package flasher

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/units"
)

// Options control a flash. The zero value verifies, uses a block map found beside the image, refuses
// internal disks and does not eject.
type Options struct {
	// Bmap is the block map to use; empty looks for IMAGE.bmap (and the name without the
	// compression suffix) beside the image.
	Bmap string
	// NoBmap writes every byte even when a block map exists.
	NoBmap bool
	// NoVerify skips the read-back verification.
	NoVerify bool
	// AllowInternal permits internal non-removable disks, each only when Confirm holds the drive's
	// model (or its kernel name when it reports no model) exactly as the user typed it.
	AllowInternal bool
	Confirm       map[string]string // device path → what the user typed
	// Eject ejects removable drives after a successful flash; a failed eject is only a warning.
	Eject bool
	// HashImage computes the sha256 of the whole uncompressed image while writing (Result.SHA256),
	// to compare with a published checksum. Block-mapped raw images are read by ranges: no sum.
	HashImage bool
	// Decoder selects the gzip and xz decoders (see source.Image.Decoder).
	Decoder string
	// SHA256 is a published checksum of the image, of the file as downloaded (compressed) or of
	// the uncompressed image: whichever matches. DownloadSHA256 and ImageSHA256 name which (as a
	// catalogue does). A mismatch fails the flash before the first MiB is written (ErrChecksum).
	SHA256, DownloadSHA256, ImageSHA256 string
	// SizeHint is the uncompressed size a catalogue gives, checked against the drives when the
	// image itself does not record its size.
	SizeHint int64
	// Fetch configures the download of a URL image; Fetch.CacheDir keeps a copy of a download whose
	// checksum was confirmed, and a later flash of the same checksum reads it from there.
	Fetch source.Fetch
	// Progress receives events of every drive (Event.Device), one call at a time.
	Progress progress.Func
	Log      logrus.FieldLogger
	// Customise changes a partition of the image as it is written (first-boot settings); with a
	// block map, the changed partition is written in full and the rest by the map. Nil writes the
	// image as is.
	Customise Customiser
	// TempDir holds the partition Customise changes while the image streams; "" is os.TempDir().
	TempDir string

	hooks hooks
}

// hooks are test seams.
type hooks struct {
	open       func(Device) (blockDevice, error) // replaces openDevice
	afterWrite func(Device)                      // runs between writing and verifying
	lookup     func(string) (Device, error)      // replaces lookupDevice
}

// Job is a checked plan: the image, its block map and the target drives. Every safety rule that can
// be checked before opening a drive has passed.
type Job struct {
	Image    *source.Image
	Bmap     *bmap.Map
	BmapPath string
	Targets  []Device
	opts     Options

	minSizeChecked bool // the image's MinSize was measured

	sumMu       sync.Mutex
	downloadSum string // the download's sha256, once computed
}

// Result is the outcome for one drive.
type Result struct {
	Device      string `json:"device"`
	Description string `json:"description"`
	ImageSize   int64  `json:"image_size"`
	Written     int64  `json:"written"`
	Verified    bool   `json:"verified"`
	SHA256      string `json:"sha256,omitempty"` // of the whole uncompressed image, when it was read in full
	// DownloadSHA256 is the sha256 of the file as downloaded, when it was checked.
	DownloadSHA256 string   `json:"download_sha256,omitempty"`
	Customised     string   `json:"customised,omitempty"` // what Options.Customise changed
	Seconds        float64  `json:"seconds"`              // the whole flash
	WriteSecs      float64  `json:"write_seconds"`        // writing, including the final flush
	VerifySecs     float64  `json:"verify_seconds"`       // reading back
	Warnings       []string `json:"warnings,omitempty"`
	Err            error    `json:"-"`
	Error          string   `json:"error,omitempty"`
	Code           string   `json:"code,omitempty"`  // the error's sentinel, see ErrorCode
	Codes          []string `json:"codes,omitempty"` // all its sentinels, see ErrorCodes
}

// Flash writes image to every device and verifies each; see Prepare and Job.Run.
func Flash(ctx context.Context, image string, devices []string, opts Options) ([]Result, error) {
	j, err := PrepareContext(ctx, image, devices, opts)
	if err != nil {
		return nil, err
	}
	return j.Run(ctx)
}

// Prepare probes the image, loads its block map and checks every target against the safety rules:
// a block device, a whole drive, not the system drive, not the drive holding the image, not an
// internal disk unless allowed and confirmed, not read-only, and large enough. Nothing is written.
func Prepare(image string, devices []string, opts Options) (*Job, error) {
	return PrepareContext(context.Background(), image, devices, opts)
}

// PrepareContext is Prepare with a context for probing a URL image.
func PrepareContext(ctx context.Context, image string, devices []string, opts Options) (j *Job, err error) {
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = l
	}
	if len(devices) == 0 {
		return nil, errors.New("flash: no target drive given; choose one from 'kiln devices' (Kiln never picks one for you)")
	}
	if !slices.Contains(source.Decoders, opts.Decoder) {
		return nil, fmt.Errorf("flash: unknown decoder %q: choose one of %s", opts.Decoder, strings.Join(source.Decoders[1:], ", "))
	}
	if err := checkSums(&opts); err != nil {
		return nil, err
	}
	image = cachedImage(image, opts)
	im, err := source.ProbeWith(ctx, image, opts.Fetch)
	if err != nil {
		return nil, fmt.Errorf("flash: %w", sourceError(err))
	}
	defer func() {
		if err != nil {
			im.Release()
		}
	}()
	if opts.Fetch.CacheDir != "" {
		if err := im.CacheDownload(); err != nil {
			opts.Log.WithError(err).Warn("not caching the download")
		}
	}
	im.Decoder = opts.Decoder
	j = &Job{Image: im, opts: opts}
	if !opts.NoBmap {
		if err := j.loadBmap(); err != nil {
			return nil, err
		}
	}
	var imageDisks []string
	if !im.IsRemote() {
		imageDisks, _ = disksOfFile(image) // unknown on failure: the other rules still apply
	}
	lookup := lookupDevice
	if opts.hooks.lookup != nil {
		lookup = opts.hooks.lookup
	}
	seen := map[string]string{}
	for _, p := range devices {
		d, err := lookup(p)
		if err != nil {
			return nil, fmt.Errorf("flash %s: %w", p, err)
		}
		if prev, dup := seen[d.Name]; dup {
			return nil, fmt.Errorf("flash %s: it is the same drive as %s; give each drive once", p, prev)
		}
		seen[d.Name] = p
		if err := checkTarget(d, imageDisks, image, opts); err != nil {
			return nil, fmt.Errorf("flash %s: %w", p, err)
		}
		if err := j.checkSize(d); err != nil {
			return nil, fmt.Errorf("flash %s: %w", p, err)
		}
		j.Targets = append(j.Targets, d)
	}
	return j, nil
}

// checkTarget applies the rules that depend only on what the drive is.
func checkTarget(d Device, imageDisks []string, image string, opts Options) error {
	switch {
	case d.System:
		return fmt.Errorf("%w (%s); Kiln never writes the drive the computer runs from — choose another drive", ErrSystemDrive, d.SystemReason)
	case slices.Contains(imageDisks, d.Name) || backedBy(d, image):
		return fmt.Errorf("%w; copy the image to another drive first, or choose another target", ErrImageOnDevice)
	case d.ReadOnly:
		return fmt.Errorf("%w; if it is an SD card, slide its lock switch off and reinsert it", ErrReadOnly)
	case d.Size == 0:
		return fmt.Errorf("%w: no medium in the drive; insert the card and try again", ErrRemoved)
	case d.Internal:
		want := d.Model
		if want == "" {
			want = d.Name
		}
		if !opts.AllowInternal {
			return fmt.Errorf("%w (%s); if you really mean to erase it, pass --allow-internal and type its model %q when asked", ErrInternal, d.Description(), want)
		}
		if got := strings.TrimSpace(opts.Confirm[d.Path]); got != want {
			return fmt.Errorf("%w (%s): the confirmation %q does not match the drive's model %q", ErrInternal, d.Description(), got, want)
		}
	}
	return nil
}

// ConfirmText is what a user must type to confirm flashing an internal drive.
func ConfirmText(d Device) string {
	if d.Model != "" {
		return d.Model
	}
	return d.Name
}

// checkSize refuses a drive smaller than the image, before a byte is written. With a block map only
// the mapped part has to fit.
func (j *Job) checkSize(d Device) error {
	need := j.Image.Size
	if j.Bmap != nil {
		need = j.Bmap.ImageSize
		if need > d.Size {
			last := j.Bmap.Ranges[len(j.Bmap.Ranges)-1]
			off, n := j.Bmap.Bounds(last)
			if off+n <= d.Size {
				return nil // the overflow is unmapped: nothing is written there
			}
		}
	}
	if need < 0 && j.opts.SizeHint > d.Size {
		return fmt.Errorf("%w: the catalogue gives the image as %s but the drive holds %s; use a larger drive", ErrTooSmall, units.Decimal(j.opts.SizeHint), units.Decimal(d.Size))
	}
	if need < 0 {
		if j.Image.MinSize > d.Size {
			if err := j.confirmMinSize(); err != nil {
				return err
			}
		}
		if j.Image.MinSize > d.Size {
			return fmt.Errorf("%w: the image holds at least %s but the drive %s; use a larger drive", ErrTooSmall, units.Decimal(j.Image.MinSize), units.Decimal(d.Size))
		}
		return nil // checked again while writing: nothing past the end is ever written
	}
	if need > d.Size {
		return fmt.Errorf("%w: the image needs %s (%d bytes) but the drive holds %s (%d bytes); use a larger drive",
			ErrTooSmall, units.Decimal(need), need, units.Decimal(d.Size), d.Size)
	}
	return nil
}

// confirmMinSize checks a size hint that would refuse a drive (gzip records the size modulo 4 GiB
// in its last 4 bytes, which are garbage when the download was cut off) by decompressing up to the
// claimed size. A cut-off image is refused as such, not as too large.
func (j *Job) confirmMinSize() error {
	if j.minSizeChecked {
		return nil
	}
	j.minSizeChecked = true
	n, err := j.Image.Measure(context.Background(), j.Image.MinSize)
	if err != nil {
		return sourceError(err)
	}
	j.Image.MinSize = n
	return nil
}

// bmapCandidates lists where a block map for image may be.
func bmapCandidates(image string) []string {
	out := []string{image + ".bmap"}
	base := image
	for _, ext := range []string{".gz", ".xz", ".zst", ".bz2", ".zip"} {
		if s, ok := strings.CutSuffix(image, ext); ok {
			base = s
			out = append(out, s+".bmap")
		}
	}
	if s, ok := strings.CutSuffix(base, filepath.Ext(base)); ok && filepath.Ext(base) != "" {
		out = append(out, s+".bmap")
	}
	return out
}

func (j *Job) loadBmap() error {
	path := j.opts.Bmap
	if path == "" {
		for _, c := range bmapCandidates(j.Image.Path) {
			if _, err := os.Stat(c); err == nil {
				path = c
				break
			}
		}
	}
	if path == "" {
		return nil
	}
	m, err := bmap.Load(path)
	if err != nil {
		return fmt.Errorf("flash: %w: block map: %w; pass --no-bmap to write the whole image", ErrSource, err)
	}
	if j.Image.Size >= 0 && m.ImageSize != j.Image.Size {
		return fmt.Errorf("flash: block map %s is for a %d-byte image but %s is %d bytes; give the right one with --bmap", path, m.ImageSize, j.Image.Path, j.Image.Size)
	}
	if len(m.Ranges) == 0 {
		return fmt.Errorf("flash: block map %s maps no data", path)
	}
	j.Bmap, j.BmapPath = m, path
	return nil
}

// Run flashes every target at once, each on its own goroutines with its own reader of the image,
// so a slow drive does not hold back the others. It returns one Result per target and an error
// joining the failures.
func (j *Job) Run(ctx context.Context) ([]Result, error) {
	if f := j.opts.Progress; f != nil {
		var mu sync.Mutex // each drive's writer and meter report from their own goroutines
		j.opts.Progress = func(e progress.Event) { mu.Lock(); defer mu.Unlock(); f(e) }
	}
	defer j.Image.Release()
	results := make([]Result, len(j.Targets))
	var wg sync.WaitGroup
	for i, d := range j.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = j.runDevice(ctx, d)
		}()
	}
	wg.Wait()
	var errs []error
	for i := range results {
		if results[i].Err != nil {
			results[i].Error, results[i].Code, results[i].Codes = results[i].Err.Error(), ErrorCode(results[i].Err), ErrorCodes(results[i].Err)
			errs = append(errs, results[i].Err)
		}
	}
	return results, errors.Join(errs...)
}

func (j *Job) runDevice(ctx context.Context, planned Device) (res Result) {
	start := time.Now()
	res = Result{Device: planned.Path, Description: planned.Description(), ImageSize: j.Image.Size}
	if j.Bmap != nil {
		res.ImageSize = j.Bmap.ImageSize
	}
	log := j.opts.Log.WithField("device", planned.Path)
	defer func() { res.Seconds = time.Since(start).Seconds() }()
	d, err := j.recheck(planned)
	if err != nil {
		res.Err = err
		return res
	}
	if err := unmountAll(d, log); err != nil {
		res.Err = err
		return res
	}
	open := openDevice
	if j.opts.hooks.open != nil {
		open = j.opts.hooks.open
	}
	dev, err := open(d)
	if err != nil {
		res.Err = err
		return res
	}
	w := &writer{job: j, dev: dev, d: d, progress: j.opts.Progress, seed: maphash.MakeSeed()}
	t0 := time.Now()
	err = w.write(ctx)
	if err != nil && ctx.Err() == nil && w.written.Load() > 0 && (errors.Is(err, ErrSource) || errors.Is(err, ErrTooSmall)) {
		err = &partlyWrittenError{device: d.Path, err: err}
	}
	res.WriteSecs = time.Since(t0).Seconds()
	res.Written, res.SHA256 = w.written.Load(), w.imageSum
	if w.customised {
		res.Customised = w.customNote
	} else if w.customNote != "" {
		res.Warnings = append(res.Warnings, w.customNote)
	}
	if res.ImageSize < 0 {
		res.ImageSize = w.imageBytes
	}
	res.DownloadSHA256 = w.downloadSum
	if err == nil && j.opts.hooks.afterWrite != nil {
		j.opts.hooks.afterWrite(d)
	}
	if err == nil && !j.opts.NoVerify {
		t0 = time.Now()
		err = w.verify(ctx)
		res.VerifySecs = time.Since(t0).Seconds()
		res.Verified = err == nil
	}
	if cerr := dev.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: close: %w", d.Path, cerr)
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%s: %w: flashing was cancelled and it holds an incomplete image; flash it again before use: %w", d.Path, ErrPartlyWritten, context.Cause(ctx))
		case !strings.HasPrefix(err.Error(), d.Path) && !errors.Is(err, ErrPartlyWritten):
			err = fmt.Errorf("%s: %w", d.Path, err)
		}
		res.Err = err
		return res
	}
	log.WithField("seconds", time.Since(start).Seconds()).Info("flashed")
	if note := j.ImageNote(); note != "" {
		res.Warnings = append(res.Warnings, note)
	}
	if j.opts.Eject {
		if err := ejectDevice(d); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the image was written and verified, but ejecting failed: %v; remove the drive after its light stops blinking", err))
		}
	}
	return res
}

// recheck looks the drive up again right before opening it and refuses it when its identity (kernel
// name, size, serial) changed — another drive plugged into the same path — or a rule now fails.
func (j *Job) recheck(planned Device) (Device, error) {
	lookup := lookupDevice
	if j.opts.hooks.lookup != nil {
		lookup = j.opts.hooks.lookup
	}
	d, err := lookup(planned.Path)
	if err != nil {
		if errors.Is(err, ErrNotBlockDevice) {
			return d, fmt.Errorf("%s: %w: it is gone (%w); reinsert it and choose it again", planned.Path, ErrRemoved, err)
		}
		return d, err
	}
	if d.Name != planned.Name || d.Size != planned.Size || d.Serial != planned.Serial {
		return d, fmt.Errorf("%s: %w (was %s %s serial %q, now %s %s serial %q); run 'kiln devices' and choose again",
			planned.Path, ErrIdentityChanged, planned.Name, units.Decimal(planned.Size), planned.Serial, d.Name, units.Decimal(d.Size), d.Serial)
	}
	imageDisks, _ := disksOfFile(j.Image.Path)
	if err := checkTarget(d, imageDisks, j.Image.Path, j.opts); err != nil {
		return d, fmt.Errorf("%s: %w", d.Path, err)
	}
	return d, nil
}

// ImageNote says which image of a zip archive holding several is written, or "" when there is no
// choice to report.
func (j *Job) ImageNote() string {
	if len(j.Image.Skipped) == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds %d disk images: writing the largest, %s; not writing %s (unpack the zip and flash the one you want instead)",
		filepath.Base(j.Image.Path), len(j.Image.Skipped)+1, j.Image.Entry, strings.Join(j.Image.Skipped, ", "))
}

// SetProgress sets where progress goes (after Prepare, for front ends that show the plan first).
func (j *Job) SetProgress(f progress.Func) { j.opts.Progress = f }
