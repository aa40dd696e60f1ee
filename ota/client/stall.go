package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrStalled: a response body delivered less than the minimum rate for a whole stall period
// (TUF's slow-retrieval attack, or a dead link the kernel has not noticed).
var ErrStalled = errors.New("transfer stalled")

// Stall detection defaults: at least DefaultMinRate bytes per second, measured over each
// DefaultStall period of a body read.
const (
	DefaultStall   = 30 * time.Second
	DefaultMinRate = 1 << 10
)

// watchdog cuts a response body that delivers fewer than min bytes in a window.
type watchdog struct {
	cancel  context.CancelCauseFunc
	ctx     context.Context
	window  time.Duration
	min     int64
	mu      sync.Mutex
	n       int64
	timer   *time.Timer
	stopped bool
}

// watch returns a context for one request and its watchdog; start it once the headers are
// in, stop it when done with the body.
func (c *Client) watch(ctx context.Context) (context.Context, *watchdog) {
	window, rate := c.Stall, c.MinRate
	if window <= 0 {
		window = DefaultStall
	}
	if rate <= 0 {
		rate = DefaultMinRate
	}
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, &watchdog{ctx: ctx, cancel: cancel, window: window, min: max(1, int64(float64(rate)*window.Seconds()))}
}

func (w *watchdog) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.timer = time.AfterFunc(w.window, w.check)
	}
}

func (w *watchdog) check() {
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

func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.cancel(nil)
}

// body wraps r, counting bytes and turning a cut by the watchdog into ErrStalled.
func (w *watchdog) body(r io.Reader) io.Reader { return &watchedBody{r: r, w: w} }

type watchedBody struct {
	r io.Reader
	w *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.w.mu.Lock()
	b.w.n += int64(n)
	b.w.mu.Unlock()
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.w.ctx); errors.Is(cause, ErrStalled) {
			err = cause
		}
	}
	return n, err
}
