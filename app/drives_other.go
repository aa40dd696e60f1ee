//go:build !linux

package app

import (
	"context"
	"fmt"
	"time"

	"github.com/kilnproject/kiln/flasher"
)

// watchDrives signals when the list of drives changes, by listing them every two seconds.
func watchDrives(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		sig := func() string {
			ds, _ := flasher.List(true)
			return fmt.Sprint(ds)
		}
		last := sig()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if s := sig(); s != last {
					last = s
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

// partitionsOf is not known on this system; the confirmation then names the drive only.
func partitionsOf(string) []Partition { return nil }
