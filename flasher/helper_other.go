//go:build !linux

package flasher

import (
	"errors"
	"fmt"
	"os"
)

// OpenAsUser is only needed by the Linux privileged helper.
func OpenAsUser(path string, uid, gid int) (*os.File, error) {
	return nil, fmt.Errorf("open %s as uid %d: %w", path, uid, errors.ErrUnsupported)
}
