//go:build !unix

package fstree

import (
	"errors"
	"fmt"
	"io/fs"
)

// DeviceNumbers returns the major and minor number of a device node's FileInfo (from os.Lstat).
func DeviceNumbers(fs.FileInfo) (major, minor uint32, err error) {
	return 0, 0, fmt.Errorf("device nodes: %w", errors.ErrUnsupported)
}

// Owner returns the uid and gid of a FileInfo from os.Lstat; false where the host has none.
func Owner(fs.FileInfo) (uid, gid uint32, ok bool) { return 0, 0, false }
