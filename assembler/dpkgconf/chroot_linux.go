//go:build linux

package dpkgconf

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// devices are the nodes the scripts need in /dev (tools read random numbers, write to /dev/null).
var devices = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"random", 1, 8}, {"urandom", 1, 9}}

// chroot runs script with shell inside root as root and returns its combined output (kiln runs as
// root; an ordinary user's build goes through runUserns).
func chroot(ctx context.Context, root, shell, script string, env []string) ([]byte, error) {
	for _, d := range devices {
		p := filepath.Join(root, "dev", d.name)
		os.Remove(p)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, int(d.major<<8|d.minor)); err != nil {
			return nil, fmt.Errorf("create /dev/%s in the build root: %w", d.name, err)
		}
		os.Chmod(p, 0o666)
	}
	for _, d := range []string{"tmp", "run", "proc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	cmd := exec.CommandContext(ctx, shell, "-c", script)
	cmd.Dir = "/"
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// own sets n's owner, mode and time on the file p (not following a symlink).
func own(p string, n *fstree.Node, mtime time.Time) error {
	if err := os.Lchown(p, n.UID, n.GID); err != nil {
		return err
	}
	if !n.IsSymlink() {
		mode := n.Mode.Perm()
		if n.Mode&fs.ModeSetuid != 0 {
			mode |= fs.ModeSetuid
		}
		if n.Mode&fs.ModeSetgid != 0 {
			mode |= fs.ModeSetgid
		}
		if n.Mode&fs.ModeSticky != 0 {
			mode |= fs.ModeSticky
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// owner returns a file's uid and gid.
func owner(fi fs.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}
