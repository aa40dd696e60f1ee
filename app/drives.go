package app

import (
	"context"
	"time"
)

// pollChanges calls signature every interval and signals on the returned channel when its value
// changes; signals do not pile up while nobody reads them. It stops with ctx.
func pollChanges(ctx context.Context, interval time.Duration, signature func() string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		last := signature()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if sig := signature(); sig != last {
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
