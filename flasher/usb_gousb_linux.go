//go:build cgo

package flasher

import (
	"fmt"

	"github.com/google/gousb"
)

// enrichUSB asks libusb for the device's negotiated speed and, when the device can be opened, its
// string descriptors, overriding what sysfs had. Any libusb failure leaves the sysfs values.
func enrichUSB(u *USBInfo) {
	defer func() { _ = recover() }() // gousb panics when libusb cannot initialise (no /dev/bus/usb)
	ctx := gousb.NewContext()
	defer ctx.Close()
	devs, _ := ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		if d.Bus != u.Bus || d.Address != u.Address {
			return false
		}
		u.VendorID, u.ProductID = d.Vendor.String(), d.Product.String()
		u.Speed = usbSpeed(d.Speed)
		return true
	})
	for _, d := range devs {
		if s, err := d.Manufacturer(); err == nil && s != "" {
			u.Manufacturer = s
		}
		if s, err := d.Product(); err == nil && s != "" {
			u.Product = s
		}
		if s, err := d.SerialNumber(); err == nil && s != "" {
			u.Serial = s
		}
		d.Close()
	}
}

func usbSpeed(s gousb.Speed) string {
	switch s {
	case gousb.SpeedLow:
		return "1.5 Mb/s (low)"
	case gousb.SpeedFull:
		return "12 Mb/s (full)"
	case gousb.SpeedHigh:
		return "480 Mb/s (high)"
	case gousb.SpeedSuper:
		return "5000 Mb/s (super)"
	}
	return fmt.Sprint(s)
}
