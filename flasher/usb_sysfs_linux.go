//go:build !cgo

package flasher

// enrichUSB keeps the sysfs identity when built without cgo (no libusb).
func enrichUSB(*USBInfo) {}
