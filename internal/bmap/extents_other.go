//go:build !(linux || darwin || freebsd)

package bmap

import "os"

// dataExtents treats the whole file as data where holes cannot be queried.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	if size == 0 {
		return nil, nil
	}
	return [][2]int64{{0, size}}, nil
}
