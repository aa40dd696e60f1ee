//go:build unix

package fstree

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// DeviceNumbers returns the major and minor number of a device node's FileInfo (from os.Lstat).
func DeviceNumbers(fi fs.FileInfo) (major, minor uint32, err error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, errors.New("no device numbers")
	}
	rdev := uint64(st.Rdev) //nolint:unconvert // Rdev's type differs between platforms
	return unix.Major(rdev), unix.Minor(rdev), nil
}

// Owner returns the uid and gid of a FileInfo from os.Lstat; false where the host has none.
func Owner(fi fs.FileInfo) (uid, gid uint32, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Uid, st.Gid, true
}
