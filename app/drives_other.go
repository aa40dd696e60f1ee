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
	return pollChanges(ctx, 2*time.Second, func() string {
		ds, _ := flasher.List(true)
		return fmt.Sprint(ds)
	})
}

// partitionsOf is not known on this system; the confirmation then names the drive only.
func partitionsOf(string) []Partition { return nil }
