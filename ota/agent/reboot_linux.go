package agent

import (
	"context"
	"os/exec"
	"time"
	"unsafe"

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

// RebootTryboot restarts with the argument "0 tryboot", as Raspberry Pi OS's reboot '0 tryboot':
// the kernel's Raspberry Pi firmware driver sets the firmware's one-shot tryboot flag. busybox's
// reboot passes no argument, so this syncs and calls reboot(2) itself.
func RebootTryboot(context.Context) error {
	unix.Sync()
	arg, err := unix.BytePtrFromString("0 tryboot")
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2,
		unix.LINUX_REBOOT_CMD_RESTART2, uintptr(unsafe.Pointer(arg)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
