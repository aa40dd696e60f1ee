package flasher

import (
	"context"
	"time"
)

// Watch signals on the returned channel whenever drives may have been plugged, pulled or changed
// (a card inserted into a reader), checking every interval; signals do not pile up while nobody
// reads them. It stops with ctx. On Linux a check reads a few sysfs entries, cheap enough to poll
// without netlink privileges.
func Watch(ctx context.Context, interval time.Duration) <-chan struct{} {
	ch := make(chan struct{}, 1)
	last := driveSignature() // now, so a drive plugged right after Watch returns is a change
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if sig := driveSignature(); sig != last {
					last = sig
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return ch
}
