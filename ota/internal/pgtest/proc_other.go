//go:build !unix

package pgtest

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

type credentialT struct{}

func credential(t testing.TB) *credentialT {
	testenv.Missing(t, "the PostgreSQL tests run on Linux")
	return nil
}

func sysProc(*credentialT) *syscall.SysProcAttr { return nil }
func chown(string, *credentialT) error          { return nil }
func stop(cmd *exec.Cmd)                        { cmd.Process.Kill() }
