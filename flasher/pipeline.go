package flasher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/units"
)

const (
	chunkSize = 4 << 20 // bytes per read and per write
	headSize  = 1 << 20 // the first MiB, written last
	memAlign  = 4096    // buffer alignment for direct I/O
	writers   = 4       // writes in flight per drive
	readers   = 4       // verification reads in flight per drive
	// bufferBudget bounds the data buffers of all drives together (each drive also runs its own
	// decompressor), keeping a flash well under 256 MiB whatever the image size.
	bufferBudget = 128 << 20
)

// alignedBuf returns n bytes whose address is a multiple of memAlign.
func alignedBuf(n int) []byte {
	b := make([]byte, n+memAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (memAlign - 1))
	if off != 0 {
		off = memAlign - off
	}
	return b[off : off+n : off+n]
}

// segment is a written range of the drive and the hash of the image bytes in it. The hash is
// maphash (64 bits, keyed with a random seed per flash, so a drive cannot forge it, and an order of
// magnitude faster than sha256, which would make verification CPU-bound).
type segment struct {
	off int64
	n   int
	sum uint64
}

// chunk is a buffer of image bytes at off; spans lists the [start, end) parts of buf to write.
type chunk struct {
	buf   []byte
	off   int64
	spans [][2]int
	// image holds the chunk's bytes for the whole-image hash (nil when the image is read by ranges).
	image []byte
}

// writer flashes one drive.
type writer struct {
	job      *Job
	dev      blockDevice
	d        Device
	progress progress.Func

	written  atomic.Int64
	verified atomic.Int64
	imageSum string
	// imageBytes is the image's size once read in full.
	imageBytes int64
	// downloadSum is the sha256 of the downloaded file, when it was checked.
	downloadSum string

	mu   sync.Mutex
	segs []segment
	seed maphash.Seed

	head      []byte   // the first MiB, held back
	headSpans [][2]int // its parts to write

	customNote string // what Options.Customise did, or why not
	customised bool
}

func (w *writer) lbs() int {
	if w.d.LogicalBlockSize > 0 {
		return w.d.LogicalBlockSize
	}
	return 512
}

// total is the number of bytes that will be written.
func (w *writer) total() int64 {
	if w.job.Bmap != nil {
		return w.job.Bmap.MappedBytes()
	}
	return max(0, w.job.Image.Size)
}

type bmapRange = bmap.Range

// write streams the image to the drive: a producer reads (and decompresses, hashes) the image into a
// pool of aligned buffers; several writers write them with direct I/O at their offsets; the first
// MiB goes last, after a flush, so a drive interrupted mid-way never looks bootable.
func (w *writer) write(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	nbuf := max(writers+2, min(16, bufferBudget/chunkSize/max(1, len(w.job.Targets))))
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- alignedBuf(chunkSize)
	}
	work := make(chan chunk, nbuf)
	w.head = alignedBuf(headSize)

	stop := w.meter(ctx, "writing", w.total(), &w.written)
	defer stop()

	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if ctx.Err() == nil {
					for _, sp := range c.spans {
						if err := w.writeSpan(c.buf[sp[0]:sp[1]], c.off+int64(sp[0])); err != nil {
							cancel(err)
							break
						}
					}
				}
				free <- c.buf[:cap(c.buf)]
			}
		}()
	}
	// The whole-image hash runs on its own goroutine, between reading and writing, so the
	// decompressor does not wait for it.
	ordered := make(chan chunk, 2)
	full := sha256.New()
	hashed := false
	go func() {
		for c := range ordered {
			if c.image != nil {
				full.Write(c.image)
				hashed = true
			}
			work <- c
		}
		close(work)
	}()
	err := w.produce(ctx, free, ordered)
	close(ordered)
	wg.Wait()
	if err == nil && hashed {
		w.imageSum = hex.EncodeToString(full.Sum(nil))
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // a writer's error explains more than the producer's
	} else if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	// A checksum that does not match leaves the first MiB unwritten: the drive does not boot.
	if w.downloadSum, err = w.job.verifySums(ctx, w.imageSum); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	for _, sp := range w.headSpans {
		if err := w.writeSpan(w.head[sp[0]:sp[1]], int64(sp[0])); err != nil {
			return err
		}
	}
	if err := w.sync(); err != nil {
		return err
	}
	w.progress.Report(progress.Event{Phase: "writing", Done: w.written.Load(), Total: w.total(), Device: w.d.Path, Message: "written and flushed"})
	return nil
}

func (w *writer) sync() error {
	if err := w.dev.Sync(); err != nil {
		return w.ioError("flush", 0, err)
	}
	return nil
}

// writeSpan hashes and writes p at off. A length that is not a multiple of the logical block size
// (only the image's last bytes) is completed with the drive's own bytes read back first.
func (w *writer) writeSpan(p []byte, off int64) error {
	sum := maphash.Bytes(w.seed, p)
	out := p
	if rem := len(p) % w.lbs(); rem != 0 {
		out = alignedBuf(len(p) - rem + w.lbs())
		tail := int64(len(out) - w.lbs())
		if _, err := w.dev.ReadAt(out[tail:], off+tail); err != nil {
			return w.ioError("read", off+tail, err)
		}
		copy(out, p)
	}
	if n, err := w.dev.WriteAt(out, off); err != nil || n != len(out) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return w.ioError("write", off, err)
	}
	w.mu.Lock()
	w.segs = append(w.segs, segment{off: off, n: len(p), sum: sum})
	w.mu.Unlock()
	w.written.Add(int64(len(p)))
	return nil
}

func (w *writer) ioError(op string, off int64, err error) error {
	switch {
	case isRemovedError(err):
		return fmt.Errorf("%s: %w: %s at byte %d failed (%w); the drive was unplugged or is failing — reinsert it and flash again, it holds an incomplete image",
			w.d.Path, ErrRemoved, op, off, err)
	case isNoSpaceError(err):
		return fmt.Errorf("%s: %w: %s at byte %d ran past the end of the drive (%w); use a larger drive", w.d.Path, ErrTooSmall, op, off, err)
	}
	return fmt.Errorf("%s: %s at byte %d: %w", w.d.Path, op, off, err)
}

// produce fills buffers with image data and queues the parts to write.
func (w *writer) produce(ctx context.Context, free chan []byte, work chan<- chunk) error {
	src, err := w.job.Image.Open(ctx)
	if err != nil {
		return sourceError(err)
	}
	defer src.Close()
	var cr *customReader
	if c := w.job.opts.Customise; c != nil {
		cr = newCustomReader(ctx, src, c, w.job.opts.HashImage, w.job.opts.TempDir)
		defer cr.close()
		src = struct {
			io.Reader
			io.Closer
		}{cr, src}
		defer func() { w.customNote, w.customised = cr.note, cr.changed }()
	}
	get := func() ([]byte, error) {
		select {
		case b := <-free:
			return b, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m := w.job.Bmap
	if ra, ok := src.(io.ReaderAt); ok && m != nil && w.job.Image.Format == source.Raw {
		return w.produceMapped(ctx, ra, get, work)
	}
	lbs := int64(w.lbs())
	var rc *rangeChecker
	if m != nil {
		rc = newRangeChecker(w.job)
		if cr != nil {
			rc.changed = cr.partition
		}
	}
	var off int64
	lastN := 0
	for ; ; off += chunkSize {
		buf, err := get()
		if err != nil {
			return err
		}
		n, rerr := io.ReadFull(src, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			free <- buf
			return sourceError(rerr)
		}
		buf = buf[:n]
		var spans [][2]int
		if m == nil {
			if n > 0 {
				spans = [][2]int{{0, n}}
			}
		} else {
			if spans, err = rc.feed(buf, off); err != nil {
				free <- buf
				return err
			}
			if cr != nil { // the customised partition is written in full
				po, pn := cr.partition()
				if lo, hi := max(po, off), min(po+pn, off+int64(n)); lo < hi {
					spans = addSpan(spans, int(lo-off), int(hi-off))
				}
			}
			for i := range spans { // align to the drive's blocks; the image bytes around are written too
				spans[i][0] = int(int64(spans[i][0]) / lbs * lbs)
				spans[i][1] = min(n, int((int64(spans[i][1])+lbs-1)/lbs*lbs))
			}
		}
		if off+int64(n) > w.d.Size && len(spans) > 0 && off+int64(spans[len(spans)-1][1]) > w.d.Size {
			free <- buf
			return fmt.Errorf("%s: %w: the decompressed image is larger than the drive (%s); it holds an incomplete image — use a larger drive", w.d.Path, ErrTooSmall, units.Decimal(w.d.Size))
		}
		spans = w.holdHead(buf, off, spans)
		c := chunk{buf: buf, off: off, spans: spans}
		if w.job.opts.HashImage && cr == nil {
			c.image = buf
		}
		work <- c
		lastN = n
		if rerr != nil || n < chunkSize {
			break
		}
	}
	w.imageBytes = off + int64(lastN)
	if cr != nil && w.job.opts.HashImage {
		w.imageSum = cr.sum() // of the image as published, not as customised
	}
	if rc != nil {
		if err := rc.finish(); err != nil {
			return err
		}
		if w.imageBytes != m.ImageSize {
			return fmt.Errorf("%w: %s holds %d bytes but its block map %s describes %d; the .bmap belongs to another image — give the right one with --bmap",
				ErrSource, w.job.Image.Path, w.imageBytes, w.job.BmapPath, m.ImageSize)
		}
	}
	return nil
}

// produceMapped reads only the mapped ranges of a raw image, checking each against the block map.
func (w *writer) produceMapped(ctx context.Context, ra io.ReaderAt, get func() ([]byte, error), work chan<- chunk) error {
	m := w.job.Bmap
	lbs := int64(w.lbs())
	for _, r := range m.Ranges {
		off, n := m.Bounds(r)
		h, _ := m.NewHash()
		// Align the range to the drive's blocks (the block map's blocks normally already are).
		start := off / lbs * lbs
		end := min((off+n+lbs-1)/lbs*lbs, w.job.Image.Size)
		for pos := start; pos < end; pos += chunkSize {
			buf, err := get()
			if err != nil {
				return err
			}
			k := int(min(chunkSize, end-pos))
			if _, err := ra.ReadAt(buf[:k], pos); err != nil {
				return fmt.Errorf("%w: read %s at %d: %w", ErrSource, w.job.Image.Path, pos, err)
			}
			lo, hi := max(pos, off), min(pos+int64(k), off+n)
			if lo < hi {
				h.Write(buf[lo-pos : hi-pos])
			}
			spans := w.holdHead(buf, pos, [][2]int{{0, k}})
			if len(spans) > 0 {
				work <- chunk{buf: buf[:k], off: pos, spans: spans}
			} else {
				w.release(buf, work)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err := checkRange(w.job, r, h); err != nil {
			return err
		}
	}
	return nil
}

// release returns a buffer to the pool through the work queue (an empty chunk).
func (w *writer) release(buf []byte, work chan<- chunk) { work <- chunk{buf: buf} }

// holdHead copies the parts of spans inside the first MiB into the held-back head buffer and
// returns the parts to write now.
func (w *writer) holdHead(buf []byte, off int64, spans [][2]int) [][2]int {
	if off >= headSize {
		return spans
	}
	var rest [][2]int
	for _, sp := range spans {
		s, e := off+int64(sp[0]), off+int64(sp[1])
		if s < headSize {
			he := min(e, headSize)
			copy(w.head[s:he], buf[sp[0]:sp[0]+int(he-s)])
			if k := len(w.headSpans); k > 0 && w.headSpans[k-1][1] == int(s) {
				w.headSpans[k-1][1] = int(he)
			} else {
				w.headSpans = append(w.headSpans, [2]int{int(s), int(he)})
			}
			s = he
		}
		if s < e {
			rest = append(rest, [2]int{int(s - off), sp[1]})
		}
	}
	return rest
}

// rangeChecker follows a sequential stream through the block map: it returns the mapped parts of each
// buffer and checks every range's checksum.
type rangeChecker struct {
	job *Job
	i   int
	h   hash.Hash
	// changed, when set, returns a range whose bytes were changed on purpose (customised): the
	// map's checksums of ranges meeting it are not checked.
	changed func() (off, n int64)
}

func newRangeChecker(j *Job) *rangeChecker {
	h, _ := j.Bmap.NewHash()
	return &rangeChecker{job: j, h: h}
}

func (rc *rangeChecker) feed(buf []byte, off int64) ([][2]int, error) {
	m := rc.job.Bmap
	end := off + int64(len(buf))
	var spans [][2]int
	for rc.i < len(m.Ranges) {
		r := m.Ranges[rc.i]
		ro, rn := m.Bounds(r)
		if ro >= end {
			break
		}
		lo, hi := max(ro, off), min(ro+rn, end)
		if lo < hi {
			rc.h.Write(buf[lo-off : hi-off])
			if k := len(spans); k > 0 && spans[k-1][1] == int(lo-off) {
				spans[k-1][1] = int(hi - off)
			} else {
				spans = append(spans, [2]int{int(lo - off), int(hi - off)})
			}
		}
		if ro+rn > end {
			break // the range continues in the next buffer
		}
		if !rc.isChanged(ro, rn) {
			if err := checkRange(rc.job, r, rc.h); err != nil {
				return nil, err
			}
		}
		rc.h.Reset()
		rc.i++
	}
	return spans, nil
}

func (rc *rangeChecker) isChanged(off, n int64) bool {
	if rc.changed == nil {
		return false
	}
	co, cn := rc.changed()
	return cn > 0 && off < co+cn && co < off+n
}

// addSpan adds [lo, hi) to sorted, disjoint spans, merging what overlaps or touches it.
func addSpan(spans [][2]int, lo, hi int) [][2]int {
	out := make([][2]int, 0, len(spans)+1)
	placed := false
	for _, s := range spans {
		switch {
		case s[1] < lo:
			out = append(out, s)
		case s[0] > hi:
			if !placed {
				out, placed = append(out, [2]int{lo, hi}), true
			}
			out = append(out, s)
		default:
			lo, hi = min(lo, s[0]), max(hi, s[1])
		}
	}
	if !placed {
		out = append(out, [2]int{lo, hi})
		slices.SortFunc(out, func(a, b [2]int) int { return a[0] - b[0] })
	}
	return out
}

func (rc *rangeChecker) finish() error {
	if rc.i < len(rc.job.Bmap.Ranges) {
		return fmt.Errorf("%w: %s ended before the block map's range %d; the image is truncated", ErrSource, rc.job.Image.Path, rc.job.Bmap.Ranges[rc.i].First)
	}
	return nil
}

func checkRange(j *Job, r bmapRange, h hash.Hash) error {
	if r.Checksum == "" {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.Checksum {
		off, n := j.Bmap.Bounds(r)
		return fmt.Errorf("%w: %s does not match its block map %s at bytes %d-%d (blocks %d-%d); the image or the .bmap is corrupt or they do not belong together",
			ErrSource, j.Image.Path, j.BmapPath, off, off+n-1, r.First, r.Last)
	}
	return nil
}

// verify reads every written range back with direct I/O (the page cache dropped first) and compares
// its hash with what was written; on a mismatch it finds the first differing byte.
func (w *writer) verify(ctx context.Context) error {
	if err := w.dev.DropCache(); err != nil {
		w.job.opts.Log.WithError(err).WithField("device", w.d.Path).Debug("drop cache")
	}
	segs := w.segs
	sort.Slice(segs, func(a, b int) bool { return segs[a].off < segs[b].off })
	var total int64
	for _, s := range segs {
		total += int64(s.n)
	}
	stop := w.meter(ctx, "verifying", total, &w.verified)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idx := make(chan int)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		bad     = int64(-1)
		badSeg  segment
		readErr error
	)
	lbs := w.lbs()
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := alignedBuf(chunkSize + lbs)
			for i := range idx {
				s := segs[i]
				k := (s.n + lbs - 1) / lbs * lbs
				if _, err := w.dev.ReadAt(buf[:k], s.off); err != nil {
					mu.Lock()
					if readErr == nil {
						readErr = w.ioError("read back", s.off, err)
					}
					mu.Unlock()
					cancel(err)
					continue
				}
				if maphash.Bytes(w.seed, buf[:s.n]) != s.sum {
					mu.Lock()
					if bad < 0 || s.off < bad {
						bad, badSeg = s.off, s
					}
					mu.Unlock()
					cancel(ErrVerify)
					continue
				}
				w.verified.Add(int64(s.n))
			}
		}()
	}
dispatch:
	for i := range segs {
		select {
		case idx <- i:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(idx)
	wg.Wait()
	switch {
	case bad >= 0:
		return w.locate(context.WithoutCancel(ctx), badSeg)
	case readErr != nil:
		return readErr
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	w.progress.Report(progress.Event{Phase: "verifying", Done: total, Total: total, Device: w.d.Path, Message: "verified"})
	return nil
}

// locate finds the first byte of segment s that differs from the image.
func (w *writer) locate(ctx context.Context, s segment) error {
	verr := &VerifyError{Device: w.d.Path, Offset: s.off}
	if w.customised {
		return verr // the image's bytes are not what was written: the segment's start it is
	}
	want := make([]byte, s.n)
	src, err := w.job.Image.Open(ctx)
	if err != nil {
		return verr
	}
	defer src.Close()
	if ra, ok := src.(io.ReaderAt); ok {
		_, err = ra.ReadAt(want, s.off)
	} else if _, err = io.CopyN(io.Discard, src, s.off); err == nil {
		_, err = io.ReadFull(src, want)
	}
	if err != nil {
		return verr
	}
	lbs := w.lbs()
	got := alignedBuf((s.n + lbs - 1) / lbs * lbs)
	if _, err := w.dev.ReadAt(got, s.off); err != nil {
		return verr
	}
	for i := range want {
		if want[i] != got[i] {
			verr.Offset = s.off + int64(i)
			break
		}
	}
	return verr
}

// meter reports progress for a phase every 250 ms with the rate and the time left, until stopped.
func (w *writer) meter(ctx context.Context, phase string, total int64, done *atomic.Int64) func() {
	if w.progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				n := done.Load()
				el := time.Since(start).Seconds()
				msg := ""
				if el > 0 && n > 0 {
					rate := float64(n) / el
					msg = units.Decimal(int64(rate)) + "/s"
					if total > n {
						left := time.Duration(float64(total-n) / rate * float64(time.Second)).Round(time.Second)
						msg += ", " + left.String() + " left"
					}
				}
				if note := w.job.downloadNote(); note != "" && phase == "writing" {
					msg = strings.TrimPrefix(msg+" · "+note, " · ")
				}
				w.progress.Report(progress.Event{Phase: phase, Done: n, Total: total, Device: w.d.Path, Message: msg})
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}
