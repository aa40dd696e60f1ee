package vmrunner

import (
	"os/exec"
	"syscall"
)

// prepareCommand puts QEMU in its own process group (a terminal's Ctrl-C reaches only kiln, which
// stops QEMU cleanly) and has the kernel kill it if the process that started it dies.
func prepareCommand(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// guardProcess needs nothing on Linux: Pdeathsig already ties QEMU's life to ours.
func guardProcess(cmd *exec.Cmd) (release func()) { return func() {} }

// killProcess kills QEMU's process group.
func killProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Process.Kill()
	}
}
