//go:build !linux && !darwin && !windows

package vmrunner

import "os/exec"

func prepareCommand(cmd *exec.Cmd)                {}
func guardProcess(cmd *exec.Cmd) (release func()) { return func() {} }
func killProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
