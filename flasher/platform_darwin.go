package flasher

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func diskutil(args ...string) (map[string]any, error) {
	out, err := exec.Command("diskutil", append(args[:1:1], append([]string{"-plist"}, args[1:]...)...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("diskutil %s: %w", strings.Join(args, " "), err)
	}
	v, err := parsePlist(out)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}

func listAll() ([]Device, error) {
	list, err := diskutil("list")
	if err != nil {
		return nil, err
	}
	return diskutilDevices(list, func(id string) (map[string]any, error) { return diskutil("info", id) }), nil
}

func listDevices(all bool) ([]Device, error) {
	ds, err := listAll()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range ds {
		if h, _ := d.Hidden(); h && !all {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// lookupDevice accepts /dev/diskN and /dev/rdiskN (the raw node Kiln writes through).
func lookupDevice(path string) (Device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("%s: %w: no such device; run 'kiln devices' to list drives", path, ErrNotBlockDevice)
		}
		return Device{}, fmt.Errorf("%s: %w", path, err)
	}
	id := strings.TrimPrefix(filepath.Base(path), "r")
	if fi.Mode()&os.ModeDevice == 0 || !strings.HasPrefix(id, "disk") {
		return Device{}, fmt.Errorf("%s: %w (it is a %s); give the drive's device path, e.g. /dev/disk4", path, ErrNotBlockDevice, modeName(fi.Mode()))
	}
	if wholeDiskOf(id) != id {
		return Device{}, fmt.Errorf("%s: %w: it is a partition of /dev/%s; flash the whole drive", path, ErrNotBlockDevice, wholeDiskOf(id))
	}
	ds, err := listAll()
	if err != nil {
		return Device{}, err
	}
	for _, d := range ds {
		if d.Name == id {
			return d, nil
		}
	}
	return Device{}, fmt.Errorf("%s: %w: diskutil does not list it as a physical drive", path, ErrNotBlockDevice)
}

func disksOfFile(path string) ([]string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil, err
	}
	from := unix.ByteSliceToString(st.Mntfromname[:])
	if !strings.HasPrefix(from, "/dev/disk") {
		return nil, nil
	}
	id := wholeDiskOf(strings.TrimPrefix(from, "/dev/"))
	list, err := diskutil("list")
	if err != nil {
		return []string{id}, nil
	}
	for _, e := range pList(list, "AllDisksAndPartitions") {
		if pStr(e, "DeviceIdentifier") == id {
			var out []string
			for _, s := range pList(e, "APFSPhysicalStores") {
				out = append(out, wholeDiskOf(pStr(s, "DeviceIdentifier")))
			}
			if len(out) > 0 {
				return out, nil
			}
		}
	}
	return []string{id}, nil
}

func backedBy(Device, string) bool { return false }

func unmountAll(d Device, log logrus.FieldLogger) error {
	if len(d.Mounts) == 0 {
		return nil
	}
	log.WithField("device", d.Path).Info("unmounting")
	out, err := exec.Command("diskutil", "unmountDisk", d.Path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s; quit the programs using it (Finder windows, terminals) and try again", d.Path, ErrBusy, strings.TrimSpace(string(out)))
	}
	return nil
}

type darwinDevice struct{ f *os.File }

func (d *darwinDevice) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *darwinDevice) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *darwinDevice) Sync() error                              { return d.f.Sync() }
func (d *darwinDevice) Close() error                             { return d.f.Close() }
func (d *darwinDevice) DropCache() error                         { return nil } // the raw node has no cache

// openDevice opens the raw node /dev/rdiskN with an exclusive lock and caching off.
func openDevice(d Device) (blockDevice, error) {
	raw := filepath.Join(filepath.Dir(d.Path), "r"+d.Name)
	f, err := os.OpenFile(raw, os.O_RDWR|unix.O_EXLOCK|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("%s: %w: another program has it open; close it and try again", d.Path, ErrBusy)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("%s: %w: writing a drive needs administrator rights; run 'sudo kiln flash …'", d.Path, ErrPermission)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO):
			return nil, fmt.Errorf("%s: %w: it disappeared; reinsert it and try again", d.Path, ErrRemoved)
		}
		return nil, fmt.Errorf("%s: open: %w", raw, err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: disable caching: %w", raw, err)
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", raw, err)
	}
	return &darwinDevice{f: f}, nil
}

func ejectDevice(d Device) error {
	if out, err := exec.Command("diskutil", "eject", d.Path).CombinedOutput(); err != nil {
		return fmt.Errorf("eject %s: %s", d.Path, bytes.TrimSpace(out))
	}
	return nil
}

func isRemovedError(err error) bool {
	return errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EIO)
}

func isNoSpaceError(err error) bool { return errors.Is(err, unix.ENOSPC) }
