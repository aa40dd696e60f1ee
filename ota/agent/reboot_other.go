//go:build !linux

package agent

import (
	"context"
	"errors"
	"fmt"
)

// Reboot is only implemented on Linux, where Kiln images run.
func Reboot(context.Context) error {
	return fmt.Errorf("reboot: %w", errors.ErrUnsupported)
}

// RebootTryboot is only implemented on Linux.
func RebootTryboot(context.Context) error {
	return fmt.Errorf("reboot: %w", errors.ErrUnsupported)
}
