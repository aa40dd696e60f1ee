package vmrunner

import (
	"fmt"
	"time"

	"golang.org/x/sys/windows"
)

func hostAccel() Accel { return AccelWHPX }

// accelPresent leaves the decision to the probe: QEMU reports a missing Windows Hypervisor
// Platform feature itself ("WHPX: No accelerator found").
func accelPresent() error { return nil }

// hostBootID identifies the current boot of the host by its boot time, to the minute.
func hostBootID() string {
	up := time.Duration(windows.DurationSinceBoot())
	return fmt.Sprint(time.Now().Add(-up).Truncate(time.Minute).Unix())
}
