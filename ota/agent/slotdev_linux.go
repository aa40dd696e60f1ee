package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// exclusive opens a block device only while nothing has it mounted or open exclusively.
const exclusive = unix.O_EXCL

// dropCache empties the kernel's buffer cache for a block device, so a read-back comes from
// the device itself.
func dropCache(f *os.File) {
	fd := int(f.Fd())
	unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
	unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
}
