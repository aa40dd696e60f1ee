package flasher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/windows"
)

const (
	ioctlDiskGetLengthInfo         = 0x0007405c
	ioctlDiskGetDriveGeometryEx    = 0x000700a0
	ioctlDiskIsWritable            = 0x00070024
	ioctlStorageQueryProperty      = 0x002d1400
	ioctlStorageEjectMedia         = 0x002d4808
	ioctlVolumeGetVolumeDiskExtent = 0x00560000
	fsctlLockVolume                = 0x00090018
	fsctlDismountVolume            = 0x00090020
)

var physicalDrive = regexp.MustCompile(`(?i)^\\\\\.\\PhysicalDrive(\d+)$`)

func openHandle(path string, access uint32, share uint32, flags uint32) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	return windows.CreateFile(p, access, share, nil, windows.OPEN_EXISTING, flags, 0)
}

func ioctl(h windows.Handle, code uint32, in []byte, out []byte) (int, error) {
	var inp, outp *byte
	if len(in) > 0 {
		inp = &in[0]
	}
	if len(out) > 0 {
		outp = &out[0]
	}
	var n uint32
	err := windows.DeviceIoControl(h, code, inp, uint32(len(in)), outp, uint32(len(out)), &n, nil)
	return int(n), err
}

// volumeDisks maps each drive letter to the physical drive numbers its volume spans.
func volumeDisks() map[string][]int {
	out := map[string][]int{}
	mask, _ := windows.GetLogicalDrives()
	for i := 0; i < 26; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		letter := string(rune('A'+i)) + ":"
		h, err := openHandle(`\\.\`+letter, 0, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, 0)
		if err != nil {
			continue
		}
		buf := make([]byte, 8+24*16)
		if n, err := ioctl(h, ioctlVolumeGetVolumeDiskExtent, nil, buf); err == nil {
			if disks := parseDiskExtents(buf[:n]); len(disks) > 0 {
				out[letter] = disks
			}
		}
		windows.CloseHandle(h)
	}
	return out
}

// systemDrives are the letters Windows runs from: %SystemDrive% and the volume of %SystemRoot%.
func systemDrives() []string {
	out := []string{"C:"}
	if s := os.Getenv("SystemDrive"); s != "" {
		out[0] = strings.ToUpper(s)
	}
	if dir, err := windows.GetWindowsDirectory(); err == nil {
		out = append(out, strings.ToUpper(filepath.VolumeName(dir)))
	}
	return out
}

// driveAnswers asks physical drive n the questions windowsDrive decodes.
func driveAnswers(n int) (windowsAnswers, bool) {
	var a windowsAnswers
	h, err := openHandle(winDrivePath(n), 0, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, 0)
	if err != nil {
		return a, false
	}
	defer windows.CloseHandle(h)
	ask := func(code uint32, in []byte, size int) []byte {
		buf := make([]byte, size)
		n, err := ioctl(h, code, in, buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	a.Length = ask(ioctlDiskGetLengthInfo, nil, 8)
	a.Geometry = ask(ioctlDiskGetDriveGeometryEx, nil, 256)
	a.Storage = ask(ioctlStorageQueryProperty, make([]byte, 12), 1024) // StorageDeviceProperty, PropertyStandardQuery
	_, err = ioctl(h, ioctlDiskIsWritable, nil, nil)
	a.WriteProtected = errors.Is(err, windows.ERROR_WRITE_PROTECT)
	return a, true
}

func describeDrive(n int, letters map[string][]int) (Device, bool) {
	a, ok := driveAnswers(n)
	if !ok {
		return Device{}, false
	}
	return windowsDrive(n, a, letters, systemDrives()), true
}

func listDevices(all bool) ([]Device, error) {
	letters := volumeDisks()
	var out []Device
	for n := 0; n < 64; n++ {
		d, ok := describeDrive(n, letters)
		if !ok {
			continue
		}
		if h, _ := d.Hidden(); h && !all {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func lookupDevice(path string) (Device, error) {
	m := physicalDrive.FindStringSubmatch(path)
	if m == nil {
		return Device{}, fmt.Errorf("%s: %w; give the drive as \\\\.\\PhysicalDriveN (see 'kiln devices')", path, ErrNotBlockDevice)
	}
	n, _ := strconv.Atoi(m[1])
	d, ok := describeDrive(n, volumeDisks())
	if !ok {
		return Device{}, fmt.Errorf("%s: %w: no such drive; run 'kiln devices' to list drives", path, ErrNotBlockDevice)
	}
	d.Path = path
	return d, nil
}

func disksOfFile(path string) ([]string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // a link or junction to another volume
	}
	vol := strings.ToUpper(filepath.VolumeName(abs))
	var out []string
	for _, k := range volumeDisks()[vol] {
		out = append(out, "PhysicalDrive"+strconv.Itoa(k))
	}
	return out, nil
}

func backedBy(Device, string) bool { return false }

// unmountAll is done by openDevice on Windows: volumes are locked and dismounted while the drive
// is open.
func unmountAll(Device, logrus.FieldLogger) error { return nil }

type windowsDevice struct {
	f       *os.File
	volumes []windows.Handle // locked and dismounted for the duration of the flash
}

func (w *windowsDevice) ReadAt(p []byte, off int64) (int, error)  { return w.f.ReadAt(p, off) }
func (w *windowsDevice) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, off) }
func (w *windowsDevice) Sync() error                              { return w.f.Sync() }
func (w *windowsDevice) DropCache() error                         { return nil } // opened unbuffered

func (w *windowsDevice) Close() error {
	err := w.f.Close()
	for _, h := range w.volumes {
		windows.CloseHandle(h)
	}
	return err
}

// openDevice locks and dismounts the drive's volumes, then opens the drive unbuffered with no
// sharing (the exclusive open).
func openDevice(d Device) (blockDevice, error) {
	m := physicalDrive.FindStringSubmatch(d.Path)
	if m == nil {
		return nil, fmt.Errorf("%s: %w", d.Path, ErrNotBlockDevice)
	}
	n, _ := strconv.Atoi(m[1])
	w := &windowsDevice{}
	fail := func(err error) (blockDevice, error) {
		for _, h := range w.volumes {
			windows.CloseHandle(h)
		}
		return nil, err
	}
	for letter, disks := range volumeDisks() {
		for _, k := range disks {
			if k != n {
				continue
			}
			h, err := openHandle(`\\.\`+letter, windows.GENERIC_READ|windows.GENERIC_WRITE, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, 0)
			if err != nil {
				return fail(classifyWindows(d, err))
			}
			w.volumes = append(w.volumes, h)
			if _, err := ioctl(h, fsctlLockVolume, nil, nil); err != nil {
				return fail(fmt.Errorf("%s: %w: volume %s is in use (%v); close the programs using it and try again", d.Path, ErrBusy, letter, err))
			}
			if _, err := ioctl(h, fsctlDismountVolume, nil, nil); err != nil {
				return fail(fmt.Errorf("%s: %w: dismount %s: %v", d.Path, ErrBusy, letter, err))
			}
		}
	}
	h, err := openHandle(d.Path, windows.GENERIC_READ|windows.GENERIC_WRITE, 0,
		windows.FILE_FLAG_NO_BUFFERING|windows.FILE_FLAG_WRITE_THROUGH)
	if err != nil {
		return fail(classifyWindows(d, err))
	}
	w.f = os.NewFile(uintptr(h), d.Path)
	return w, nil
}

func classifyWindows(d Device, err error) error {
	switch {
	case errors.Is(err, windows.ERROR_SHARING_VIOLATION), errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return fmt.Errorf("%s: %w: another program has it open; close it and try again", d.Path, ErrBusy)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return fmt.Errorf("%s: %w: writing a drive needs administrator rights; run Kiln as administrator", d.Path, ErrPermission)
	case errors.Is(err, windows.ERROR_WRITE_PROTECT):
		return fmt.Errorf("%s: %w: the drive is write-protected", d.Path, ErrReadOnly)
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_NOT_READY):
		return fmt.Errorf("%s: %w: it disappeared; reinsert it and try again", d.Path, ErrRemoved)
	}
	return fmt.Errorf("%s: open: %w", d.Path, err)
}

func ejectDevice(d Device) error {
	h, err := openHandle(d.Path, windows.GENERIC_READ, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, 0)
	if err != nil {
		return fmt.Errorf("eject %s: %w", d.Path, err)
	}
	defer windows.CloseHandle(h)
	if _, err := ioctl(h, ioctlStorageEjectMedia, nil, nil); err != nil {
		return fmt.Errorf("eject %s: %w", d.Path, err)
	}
	return nil
}

func isRemovedError(err error) bool {
	return errors.Is(err, windows.ERROR_NOT_READY) || errors.Is(err, windows.ERROR_DEVICE_NOT_CONNECTED) ||
		errors.Is(err, windows.ERROR_NO_SUCH_DEVICE) || errors.Is(err, windows.ERROR_CRC) || errors.Is(err, windows.ERROR_GEN_FAILURE)
}

func isNoSpaceError(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_SECTOR_NOT_FOUND)
}
