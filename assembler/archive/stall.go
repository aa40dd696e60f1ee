package archive

import (
	"context"
	"time"

	"github.com/kilnproject/kiln/internal/stall"
)

// ErrStalled is wrapped by errors for a download that received nothing for the idle time (a
// slow-retrieval attack or a dead connection); running again resumes it.
var ErrStalled = stall.ErrStalled

// defaultIdle is how long a download may receive nothing before it is abandoned.
const defaultIdle = 60 * time.Second

// watch returns a request context that is cut when nothing arrives for idle.
func watch(ctx context.Context, idle time.Duration) (context.Context, *stall.Watchdog) {
	if idle <= 0 {
		idle = defaultIdle
	}
	return stall.Watch(ctx, idle, 1)
}
