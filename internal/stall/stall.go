// Package stall cuts network transfers that stop delivering: a peer that sends a little and then
// nothing (TUF's slow-retrieval attack, or a dead link the kernel has not noticed) would otherwise
// hold a download for as long as the connection stays open.
package stall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrStalled is wrapped by the error of a transfer the watchdog cut.
var ErrStalled = errors.New("transfer stalled")

// Watchdog cancels a transfer's context when fewer than min bytes arrive in a window, counting
// from Watch: the wait for the answer counts too.
type Watchdog struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	window  time.Duration
	min     int64
	mu      sync.Mutex
	n       int64
	timer   *time.Timer
	stopped bool
}

// Watch returns the context to make the request with and its watchdog; Stop it when done.
// min is clamped to at least one byte.
func Watch(ctx context.Context, window time.Duration, min int64) (context.Context, *Watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Watchdog{ctx: ctx, cancel: cancel, window: window, min: max(1, min)}
	w.timer = time.AfterFunc(window, w.check)
	return ctx, w
}

func (w *Watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if w.n < w.min {
		w.cancel(fmt.Errorf("%w: fewer than %d bytes in %s", ErrStalled, w.min, w.window))
		return
	}
	w.n = 0
	w.timer.Reset(w.window)
}

// Stop ends the watch and releases the context.
func (w *Watchdog) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// Reader counts what r delivers; a read cut by the watchdog fails with its ErrStalled error.
func (w *Watchdog) Reader(r io.Reader) io.Reader { return &watchedReader{r: r, w: w} }

// Err turns an error caused by the watchdog's cut into its ErrStalled error; others pass.
func (w *Watchdog) Err(err error) error {
	if err != nil && err != io.EOF {
		if cause := context.Cause(w.ctx); errors.Is(cause, ErrStalled) {
			return cause
		}
	}
	return err
}

type watchedReader struct {
	r io.Reader
	w *Watchdog
}

func (b *watchedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.w.mu.Lock()
	b.w.n += int64(n)
	b.w.mu.Unlock()
	return n, b.w.Err(err)
}
