package agent

import (
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// Reboot asks init to reboot (so its shutdown actions run: sync and unmount), and reboots with
// the system call if init has not done so within a minute.
func Reboot() error {
	unix.Sync()
	if err := exec.Command("/sbin/reboot").Run(); err == nil {
		time.Sleep(time.Minute)
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
