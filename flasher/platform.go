package flasher

import (
	"fmt"
	"io"
)

// blockDevice is an opened drive: the seam tests use to inject failures.
type blockDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
	// DropCache discards cached data for the drive so reads come from the device.
	DropCache() error
}

// List returns the drives a user may flash. System drives, internal disks and drives without a
// medium are included only when all is set; Device.Hidden says why they are hidden.
func List(all bool) ([]Device, error) {
	ds, err := listDevices(all)
	if err != nil {
		return nil, fmt.Errorf("list drives: %w", err)
	}
	return ds, nil
}

// Lookup describes the whole drive at path (/dev/sdb, a /dev/disk/by-id link, \\.\PhysicalDrive2).
// It fails with ErrNotBlockDevice for anything else and never creates a file.
func Lookup(path string) (Device, error) { return lookupDevice(path) }
