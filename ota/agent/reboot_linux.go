package agent

import (
	"context"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// Reboot asks init to reboot, so that its shutdown actions run (stop the agent, sync, unmount).
// It returns when ctx ends — init's shutdown signals the agent, which must then exit to free
// the data partition — and reboots with the system call if init has not acted within a minute.
func Reboot(ctx context.Context) error {
	unix.Sync()
	if err := exec.Command("/sbin/reboot").Run(); err == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Minute):
		}
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
