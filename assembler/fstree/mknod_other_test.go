//go:build !unix

package fstree

import "errors"

func mknod(string, uint32, uint32) error { return errors.ErrUnsupported }
