//go:build !unix

package fstree

import (
	"errors"
	"fmt"
	"io/fs"
)

func deviceNumbers(fs.FileInfo) (major, minor uint32, err error) {
	return 0, 0, fmt.Errorf("device nodes: %w", errors.ErrUnsupported)
}
