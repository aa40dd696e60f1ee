package vmrunner

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func hostAccel() Accel { return AccelHVF }

// accelPresent checks that the Hypervisor framework is supported (kern.hv_support).
func accelPresent() error {
	v, err := unix.SysctlUint32("kern.hv_support")
	if err != nil {
		return fmt.Errorf("sysctl kern.hv_support: %w", err)
	}
	if v != 1 {
		return errors.New("this Mac does not support the Hypervisor framework")
	}
	return nil
}

// hostBootID identifies the current boot of the host by its boot time.
func hostBootID() string {
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d", tv.Sec, tv.Usec)
}
