// Package flasher writes disk images to USB sticks and SD cards: it enumerates the drives a user may
// write, enforces Kiln's safety rules (never a system drive, never the image's own drive, never a path
// that is not a block device, never an image larger than the device, exclusive access only), streams
// the image through decompression and hashing into aligned direct-I/O writes, and verifies the result
// by reading the device back with the page cache bypassed.
package flasher

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kilnproject/kiln/internal/units"
)

// Device is one whole drive as the operating system presents it.
type Device struct {
	Path             string   `json:"path"`               // /dev/sdb, /dev/disk4, \\.\PhysicalDrive2
	Name             string   `json:"name"`               // kernel name: sdb, mmcblk0, loop3
	Size             int64    `json:"size"`               // bytes
	LogicalBlockSize int      `json:"logical_block_size"` // bytes; writes are aligned to it
	Removable        bool     `json:"removable"`
	ReadOnly         bool     `json:"read_only"`
	Transport        string   `json:"transport"` // usb, mmc, sata, nvme, virtio, scsi, loop, ...
	Vendor           string   `json:"vendor,omitempty"`
	Model            string   `json:"model,omitempty"`
	Serial           string   `json:"serial,omitempty"`
	USB              *USBInfo `json:"usb,omitempty"`
	// BackingFile is the file behind a loop device.
	BackingFile string `json:"backing_file,omitempty"`
	// Mounts lists the mountpoints of the drive, its partitions and anything stacked on them
	// (dm, md, LVM), and "[swap]" for active swap.
	Mounts []string `json:"mounts,omitempty"`
	// Holders lists the devices stacked on the drive or its partitions (dm-0, md127, ...).
	Holders []string `json:"holders,omitempty"`
	// Partitions lists the drive's partitions, for a confirmation that says what will be erased.
	Partitions []Partition `json:"partitions,omitempty"`
	// System is set when the drive holds the running system (/, /boot, /usr, swap, or any mount
	// outside the usual removable-media places); SystemReason says which.
	System       bool   `json:"system"`
	SystemReason string `json:"system_reason,omitempty"`
	// Internal is set for a fixed, non-removable physical disk.
	Internal bool `json:"internal"`
}

// Partition is one partition of a drive, with the file system udev found on it.
type Partition struct {
	Name   string   `json:"name"` // sdb1, mmcblk0p2
	Size   int64    `json:"size"` // bytes
	Label  string   `json:"label,omitempty"`
	FSType string   `json:"fstype,omitempty"`
	Mounts []string `json:"mounts,omitempty"`
}

// USBInfo is the identity of the USB device behind a drive.
type USBInfo struct {
	VendorID     string `json:"vendor_id"` // hex, e.g. "0781"
	ProductID    string `json:"product_id"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Speed        string `json:"speed,omitempty"` // e.g. "480 Mb/s (high)"
	Bus          int    `json:"bus,omitempty"`
	Address      int    `json:"address,omitempty"`
}

// Description is a one-line human name for the drive: vendor, model, size, transport.
func (d Device) Description() string {
	var parts []string
	if s := strings.TrimSpace(d.Vendor + " " + d.Model); s != "" {
		parts = append(parts, s)
	} else if d.USB != nil && d.USB.Product != "" {
		parts = append(parts, strings.TrimSpace(d.USB.Manufacturer+" "+d.USB.Product))
	}
	parts = append(parts, units.Decimal(d.Size))
	if d.Transport != "" {
		parts = append(parts, d.Transport)
	}
	if d.BackingFile != "" {
		parts = append(parts, "backed by "+d.BackingFile)
	}
	return strings.Join(parts, ", ")
}

// RemovableMounts lists the drive's mountpoints in the removable-media places (/media, /mnt, a
// temporary directory, ...): a flash unmounts them first. Mounts anywhere else make it a system
// drive, which is refused.
func (d Device) RemovableMounts() []string {
	var out []string
	for _, mp := range d.Mounts {
		if !isSystemMount(mp) {
			out = append(out, mp)
		}
	}
	return out
}

// Hidden reports whether a listing should leave the drive out unless asked for all drives, and why.
func (d Device) Hidden() (bool, string) {
	switch {
	case d.System:
		return true, "system drive: " + d.SystemReason
	case d.Internal:
		return true, "internal non-removable drive"
	case d.Size == 0:
		return true, "no medium"
	case d.ReadOnly:
		return true, "read-only"
	}
	return false, ""
}

// Sentinel errors for the states a front end branches on. Errors returned by this package wrap them
// and carry a message that says what to do next.
var (
	ErrSystemDrive     = errors.New("the drive holds the running system")
	ErrInternal        = errors.New("the drive is an internal, non-removable disk")
	ErrImageOnDevice   = errors.New("the image is stored on this drive")
	ErrNotBlockDevice  = errors.New("not a block device")
	ErrTooSmall        = errors.New("the image is larger than the drive")
	ErrBusy            = errors.New("the drive is in use")
	ErrReadOnly        = errors.New("the drive is read-only")
	ErrIdentityChanged = errors.New("the drive changed since it was selected")
	ErrRemoved         = errors.New("the drive was removed or failed")
	ErrPermission      = errors.New("permission denied")
	ErrVerify          = errors.New("verification failed")
	ErrSource          = errors.New("the image file is unreadable or corrupt")
	// ErrPartlyWritten: writing stopped part-way (cancelled, or the image or its block map turned
	// out corrupt or too large mid-write); the drive will not boot until it is flashed again.
	ErrPartlyWritten = errors.New("the drive is partly overwritten")
	// ErrIncomplete is the former name of ErrPartlyWritten.
	ErrIncomplete = ErrPartlyWritten
)

// partlyWrittenError is a failure after the first bytes reached the drive.
type partlyWrittenError struct {
	device string
	err    error
}

func (e *partlyWrittenError) Error() string {
	return fmt.Sprintf("%v — %s is now partly overwritten and will not boot; flash it again", e.err, e.device)
}

func (e *partlyWrittenError) Unwrap() []error { return []error{ErrPartlyWritten, e.err} }

// VerifyError reports the first byte where the device differs from the image.
type VerifyError struct {
	Device string
	Offset int64
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s: verification failed: the drive differs from the image at byte %d (sector %d); the drive may be failing or counterfeit — try another drive or flash again",
		e.Device, e.Offset, e.Offset/512)
}

func (e *VerifyError) Unwrap() error { return ErrVerify }

// isSystemMount reports mounts the running system depends on. Removable media are mounted under
// /media, /run/media, /mnt or a temporary directory; any other mountpoint (/, /boot, /usr, /home,
// /var, /run/live/medium, ...) marks the drive as a system drive. Windows drive letters (E:\) are
// removable places; the Windows enumeration marks the system drive.
func isSystemMount(mp string) bool {
	if mp == "[swap]" {
		return true
	}
	if len(mp) == 3 && mp[1] == ':' && mp[2] == '\\' {
		return false // a Windows drive letter: Windows marks the system drive itself
	}
	for _, p := range []string{"/media/", "/run/media/", "/mnt/", "/tmp/", "/var/tmp/", "/Volumes/"} {
		if strings.HasPrefix(mp+"/", p) && len(mp) >= len(p) {
			return false
		}
	}
	return true
}

func modeName(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
