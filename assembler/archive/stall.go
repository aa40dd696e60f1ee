package archive

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrStalled is wrapped by errors for a download that received nothing for the idle time (a
// slow-retrieval attack or a dead connection); running again resumes it.
var ErrStalled = errors.New("download stalled")

// defaultIdle is how long a download may receive nothing before it is abandoned.
const defaultIdle = 60 * time.Second

// stallGuard cancels a request's context when its body yields nothing for idle: from the
// request until the first byte, and between reads.
type stallGuard struct {
	timer *time.Timer
	idle  time.Duration
}

func withStallGuard(ctx context.Context, idle time.Duration) (context.Context, *stallGuard, func()) {
	if idle <= 0 {
		idle = defaultIdle
	}
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{idle: idle}
	g.timer = time.AfterFunc(idle, func() { cancel(ErrStalled) })
	return ctx, g, func() { g.timer.Stop(); cancel(nil) }
}

// reader wraps a response body so every read that returns data re-arms the guard.
func (g *stallGuard) reader(r io.Reader) io.Reader {
	return readFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		if n > 0 {
			g.timer.Reset(g.idle)
		}
		return n, err
	})
}

// stalled rewrites err when the guard fired.
func stalled(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), ErrStalled) {
		return ErrStalled
	}
	return err
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
