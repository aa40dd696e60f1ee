//go:build !linux

package agent

import (
	"errors"
	"fmt"
)

// Reboot is only implemented on Linux, where Kiln images run.
func Reboot() error {
	return fmt.Errorf("reboot: %w", errors.ErrUnsupported)
}
