package bmap

import (
	"io/fs"
	"os"
	"sort"
	"sync"
)

// Recorder is an image file being written that notes the byte ranges written to it. A block map
// made from them (FromExtents) follows what the image's writer wrote, so it is the same on every
// OS and filesystem, where holes found with SEEK_DATA depend on both (and Windows reports none).
// It has no Sync method: go-diskfs, handed a file that has one, syncs after each of its writes,
// which on a new image file only costs time.
type Recorder struct {
	F       *os.File
	mu      sync.Mutex
	written [][2]int64
}

// NewRecorder records the writes to f.
func NewRecorder(f *os.File) *Recorder { return &Recorder{F: f} }

func (r *Recorder) Stat() (fs.FileInfo, error)                { return r.F.Stat() }
func (r *Recorder) Read(p []byte) (int, error)                { return r.F.Read(p) }
func (r *Recorder) ReadAt(p []byte, off int64) (int, error)   { return r.F.ReadAt(p, off) }
func (r *Recorder) Seek(off int64, whence int) (int64, error) { return r.F.Seek(off, whence) }
func (r *Recorder) Close() error                              { return nil } // the file's owner closes it

// Write writes at the file's offset (go-diskfs seeks and writes).
func (r *Recorder) Write(p []byte) (int, error) {
	off, err := r.F.Seek(0, 1)
	if err != nil {
		return 0, err
	}
	n, err := r.F.Write(p)
	r.note(off, n)
	return n, err
}

// WriteAt writes p at off and notes the bytes written.
func (r *Recorder) WriteAt(p []byte, off int64) (int, error) {
	n, err := r.F.WriteAt(p, off)
	r.note(off, n)
	return n, err
}

func (r *Recorder) note(off int64, n int) {
	if n <= 0 {
		return
	}
	r.mu.Lock()
	r.written = append(r.written, [2]int64{off, off + int64(n)})
	r.mu.Unlock()
}

// Written returns the [start, end) byte ranges written so far, sorted, with overlapping and
// touching ranges merged.
func (r *Recorder) Written() [][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return merge(r.written)
}

func merge(in [][2]int64) [][2]int64 {
	s := append([][2]int64(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] })
	var out [][2]int64
	for _, e := range s {
		if n := len(out); n > 0 && e[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], e[1])
			continue
		}
		out = append(out, e)
	}
	return out
}
