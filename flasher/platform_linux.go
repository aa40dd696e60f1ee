package flasher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func listDevices(all bool) ([]Device, error) { return hostSys.list(all) }

func lookupDevice(path string) (Device, error) { return hostSys.lookup(path) }

func driveSignature() string { return hostSys.signature() }

func disksOfFile(path string) ([]string, error) { return hostSys.diskOfFile(path) }

// backedBy reports whether d is a loop device whose backing file is path.
func backedBy(d Device, path string) bool {
	if d.BackingFile == "" {
		return false
	}
	a, err1 := os.Stat(strings.TrimSuffix(d.BackingFile, " (deleted)"))
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// unmountAll unmounts the drive's mounted filesystems. A mount that stays busy is reported with
// the processes holding it.
func unmountAll(d Device, log logrus.FieldLogger) error {
	for _, mp := range d.Mounts {
		if mp == "[swap]" {
			return fmt.Errorf("%s: %w: swap is active on it; run 'swapoff' first", d.Path, ErrBusy)
		}
		log.WithFields(logrus.Fields{"device": d.Path, "mountpoint": mp}).Info("unmounting")
		err := unix.Unmount(mp, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			continue // unmounted now, or no longer mounted
		}
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%s: %w: %s is busy%s; close the files or programs using it and try again",
				d.Path, ErrBusy, mp, describeUsers(mp, d))
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%s: unmount %s: %w; run as root (sudo kiln flash …) or unmount it yourself", d.Path, mp, ErrPermission)
		}
		return fmt.Errorf("%s: unmount %s: %w", d.Path, mp, err)
	}
	return nil
}

// describeUsers names the processes with files open under mountpoint or on the drive's nodes.
func describeUsers(mountpoint string, d Device) string {
	users := processesUsing(mountpoint, d)
	if len(users) == 0 {
		return ""
	}
	if len(users) > 5 {
		users = append(users[:5], "…")
	}
	return " (held by " + strings.Join(users, ", ") + ")"
}

func processesUsing(mountpoint string, d Device) []string {
	procs, _ := os.ReadDir("/proc")
	var out []string
	self := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil || p.Name() == self {
			continue
		}
		links := []string{filepath.Join("/proc", p.Name(), "cwd"), filepath.Join("/proc", p.Name(), "root")}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			links = append(links, filepath.Join("/proc", p.Name(), "fd", fd.Name()))
		}
		for _, l := range links {
			t, err := os.Readlink(l)
			if err != nil {
				continue
			}
			if (mountpoint != "" && (t == mountpoint || strings.HasPrefix(t, mountpoint+"/"))) ||
				t == d.Path || strings.HasPrefix(t, "/dev/"+d.Name) {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out = append(out, fmt.Sprintf("pid %s (%s)", p.Name(), strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return out
}

// linuxDevice is a drive opened for exclusive direct I/O.
type linuxDevice struct {
	f *os.File
}

func (l *linuxDevice) ReadAt(p []byte, off int64) (int, error)  { return l.f.ReadAt(p, off) }
func (l *linuxDevice) WriteAt(p []byte, off int64) (int, error) { return l.f.WriteAt(p, off) }
func (l *linuxDevice) Sync() error                              { return l.f.Sync() }
func (l *linuxDevice) Close() error                             { return l.f.Close() }

// DropCache empties the kernel's buffer cache for the drive, so a read-back comes from the device.
func (l *linuxDevice) DropCache() error {
	fd := int(l.f.Fd())
	err1 := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
	err2 := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
	return errors.Join(err1, err2)
}

// openDevice opens the drive exclusively (O_EXCL: the kernel refuses while anything has it mounted
// or open exclusively) with the page cache bypassed. There is no shared fallback.
func openDevice(d Device) (blockDevice, error) {
	f, err := os.OpenFile(d.Path, os.O_RDWR|unix.O_EXCL|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, classifyOpenError(d, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		f.Close()
		return nil, fmt.Errorf("%s: %w: it is no longer a block device", d.Path, ErrIdentityChanged)
	}
	want, err := statDevnum(d.Path)
	if got := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)); err != nil || got != want || hostSys.nameOf(got) != d.Name {
		f.Close()
		return nil, fmt.Errorf("%s: %w: the path now points at another device; run 'kiln devices' and choose again", d.Path, ErrIdentityChanged)
	}
	return &linuxDevice{f: f}, nil
}

func classifyOpenError(d Device, err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		who := describeUsers("", d)
		if len(d.Holders) > 0 {
			who += " (stacked devices: " + strings.Join(d.Holders, ", ") + ")"
		}
		return fmt.Errorf("%s: %w: another program has it open or mounted%s; close it and try again", d.Path, ErrBusy, who)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: %w: writing a drive needs administrator rights; run 'sudo kiln flash …', or use the desktop app, which asks for your password", d.Path, ErrPermission)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s: %w: the drive is write-protected; slide the SD card's lock switch off and reinsert it", d.Path, ErrReadOnly)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENOMEDIUM):
		return fmt.Errorf("%s: %w: it disappeared; reinsert it and try again", d.Path, ErrRemoved)
	}
	return fmt.Errorf("%s: open: %w", d.Path, err)
}

// isRemovedError reports the errno values a drive gives when it is unplugged or failing.
func isRemovedError(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EIO) ||
		errors.Is(err, unix.ENOMEDIUM) || errors.Is(err, unix.ESHUTDOWN)
}

func isNoSpaceError(err error) bool { return errors.Is(err, unix.ENOSPC) }

// ejectDevice asks the kernel to re-read the new partition table and, for removable media, to
// eject it. Either may fail without affecting the written image.
func ejectDevice(d Device) error {
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("eject %s: %w", d.Path, err)
	}
	defer f.Close()
	fd := int(f.Fd())
	var errs []error
	if err := unix.IoctlSetInt(fd, unix.BLKRRPART, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("re-read partition table: %w", err))
	}
	if d.Removable && d.Transport != "loop" {
		const cdromEject = 0x5309 // CDROMEJECT: the SCSI START STOP UNIT eject that USB card readers honour
		if err := unix.IoctlSetInt(fd, cdromEject, 0); err != nil {
			errs = append(errs, fmt.Errorf("eject: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("eject %s: %w", d.Path, err)
	}
	return nil
}

// OpenAsUser opens path for reading with the file-system identity of uid/gid, so a helper running
// as root reads only what the requesting user may read.
func OpenAsUser(path string, uid, gid int) (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setfsgid(gid)
	unix.Setfsuid(uid)
	f, err := os.Open(path)
	unix.Setfsuid(0)
	unix.Setfsgid(0)
	if cur, _ := unix.SetfsuidRetUid(-1); cur != 0 {
		runtime.Goexit() // never hand a thread with the wrong identity back to the scheduler
	}
	if err != nil {
		return nil, fmt.Errorf("open %s as uid %d: %w", path, uid, err)
	}
	return f, nil
}
