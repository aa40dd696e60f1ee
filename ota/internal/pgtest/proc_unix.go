//go:build unix

package pgtest

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// credential is the user the server runs as: the postgres user when running as root, else nil
// (this user).
func credential(t testing.TB) *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		testenv.Missing(t, "PostgreSQL refuses to run as root and there is no postgres user (Debian package postgresql creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func sysProc(c *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: c, Setpgid: true}
}

func chown(path string, c *syscall.Credential) error {
	if c == nil {
		return nil
	}
	return os.Chown(path, int(c.Uid), int(c.Gid))
}

func stop(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGINT) }
