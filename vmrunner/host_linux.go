package vmrunner

import (
	"fmt"
	"os"
	"strings"
)

func hostAccel() Accel { return AccelKVM }

// accelPresent checks that /dev/kvm exists and opens read-write.
func accelPresent() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		if os.IsPermission(err) {
			return fmt.Errorf("/dev/kvm: permission denied; add yourself to the kvm group (sudo usermod -aG kvm $USER) and log in again")
		}
		if os.IsNotExist(err) {
			return fmt.Errorf("/dev/kvm does not exist; enable virtualization in the firmware setup and load kvm_intel or kvm_amd")
		}
		return err
	}
	return f.Close()
}

// hostBootID identifies the current boot of the host.
func hostBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
