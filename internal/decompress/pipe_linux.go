package decompress

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe asks for a 1 MiB pipe buffer (the default is 64 KiB); unprivileged users may get less,
// which only costs speed.
func growPipe(f *os.File) {
	for size := 1 << 20; size >= 128<<10; size /= 2 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, size); err == nil {
			return
		}
	}
}
