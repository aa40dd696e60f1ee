//go:build unix

package fstree

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

func deviceNumbers(fi fs.FileInfo) (major, minor uint32, err error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, errors.New("no device numbers")
	}
	rdev := uint64(st.Rdev) //nolint:unconvert // Rdev's type differs between platforms
	return unix.Major(rdev), unix.Minor(rdev), nil
}
