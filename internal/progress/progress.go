// Package progress is the small progress-reporting type shared by Kiln's core packages and adapted by
// its front ends: a terminal bar or JSON lines in the CLI, a throttled widget update in the GUI.
package progress

import (
	"io"
	"sync"
	"time"
)

// Event describes where a long operation is. Done and Total count bytes (or items, per Phase);
// Total is 0 when unknown.
type Event struct {
	Phase   string `json:"phase"`             // e.g. "initramfs", "writing", "verifying"
	Done    int64  `json:"done"`              // units finished in this phase
	Total   int64  `json:"total,omitempty"`   // units in this phase, 0 if unknown
	Message string `json:"message,omitempty"` // a short human-readable line
	Device  string `json:"device,omitempty"`  // the object worked on, where several run at once
}

// Func receives progress events. Core packages call it from their worker goroutines; a nil Func
// discards events.
type Func func(Event)

// Report calls f with e when f is not nil.
func (f Func) Report(e Event) {
	if f != nil {
		f(e)
	}
}

// Phase reports the start of a phase with a message.
func (f Func) Phase(phase, msg string, total int64) {
	f.Report(Event{Phase: phase, Message: msg, Total: total})
}

// Throttle returns a Func that forwards at most one event per interval to f, always forwarding the
// first event of a phase and any event that completes a phase (Done == Total), so a front end never
// misses a phase change or the final state.
func Throttle(f Func, interval time.Duration) Func {
	if f == nil {
		return nil
	}
	var (
		mu    sync.Mutex
		last  time.Time
		phase string
	)
	return func(e Event) {
		mu.Lock()
		now := time.Now()
		pass := e.Phase != phase || (e.Total > 0 && e.Done >= e.Total) || now.Sub(last) >= interval
		if pass {
			last, phase = now, e.Phase
		}
		mu.Unlock()
		if pass {
			f(e)
		}
	}
}

// Writer counts bytes written through it and reports them as Done in the given phase.
type Writer struct {
	W     io.Writer
	F     Func
	Phase string
	Total int64
	Base  int64 // added to the count, for a phase that continues another stream
	n     int64
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.W.Write(p)
	w.n += int64(n)
	w.F.Report(Event{Phase: w.Phase, Done: w.Base + w.n, Total: w.Total})
	return n, err
}

// Reader counts bytes read through it and reports them as Done in the given phase.
type Reader struct {
	R     io.Reader
	F     Func
	Phase string
	Total int64
	n     int64
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	r.n += int64(n)
	r.F.Report(Event{Phase: r.Phase, Done: r.n, Total: r.Total})
	return n, err
}
