package client

import (
	"context"
	"time"

	"github.com/kilnproject/kiln/internal/stall"
)

// Stall detection defaults: at least DefaultMinRate bytes per second, measured over each
// DefaultStall period of a transfer.
const (
	DefaultStall   = 30 * time.Second
	DefaultMinRate = 1 << 10
)

// watch returns a context for one request and the watchdog that cuts it when it stalls.
func (c *Client) watch(ctx context.Context) (context.Context, *stall.Watchdog) {
	window, rate := c.Stall, c.MinRate
	if window <= 0 {
		window = DefaultStall
	}
	if rate <= 0 {
		rate = DefaultMinRate
	}
	return stall.Watch(ctx, window, int64(float64(rate)*window.Seconds()))
}
