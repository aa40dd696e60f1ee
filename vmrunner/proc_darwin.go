package vmrunner

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// prepareCommand puts QEMU in its own process group: a terminal's Ctrl-C reaches only kiln, which
// stops QEMU cleanly.
func prepareCommand(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// guardProcess starts a watchdog shell that kills QEMU's process group when our end of a pipe
// closes without a word: macOS has no parent-death signal, but the kernel closes the pipe when
// kiln dies, however it dies. release tells the watchdog to exit quietly.
func guardProcess(cmd *exec.Cmd) (release func()) {
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	pgid := strconv.Itoa(cmd.Process.Pid)
	dog := exec.Command("/bin/sh", "-c", `read ok || kill -9 -- -`+pgid)
	dog.Stdin = r
	dog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dog.Start(); err != nil {
		r.Close()
		w.Close()
		return func() {}
	}
	r.Close()
	go dog.Wait()
	return func() {
		w.Write([]byte("ok\n"))
		w.Close()
	}
}

// killProcess kills QEMU's process group.
func killProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Process.Kill()
	}
}
