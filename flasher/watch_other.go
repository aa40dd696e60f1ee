//go:build !linux

package flasher

import "fmt"

// driveSignature summarises the drive list; it changes when a drive is plugged or pulled.
func driveSignature() string {
	ds, _ := listDevices(true)
	return fmt.Sprint(ds)
}
