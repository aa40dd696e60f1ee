//go:build linux

package dpkgconf_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

// rootlessDir makes a directory the test user can read, removed at the end, with a scratch
// directory tmp/ it owns.
func rootlessDir(t *testing.T, cred *syscall.Credential) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kiln-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// strays lists the processes still running a program from under dir.
func strays(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.HasPrefix(exe, dir+"/") {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out
}

// TestConfigureAsUser runs this package's chroot tests again as an ordinary user with a
// subordinate id range: the scripts run in a user namespace, the owners they set (105:107, a
// setuid file) come back as in-image ids, a failing script reports its output and a hanging one
// is killed at the timeout with nothing left running.
func TestConfigureAsUser(t *testing.T) {
	cred := testenv.UnprivilegedUser(t)
	testenv.Tool(t, "newuidmap")
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		d, _ := os.UserCacheDir()
		cache = filepath.Join(d, "kiln")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "debs", "busybox-static_*.deb"))
	if len(m) == 0 {
		testenv.Missing(t, "no busybox-static in %s/debs (run `make inputs`)", cache)
	}
	dir := rootlessDir(t, cred)
	if err := os.MkdirAll(filepath.Join(dir, "cache", "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, m[len(m)-1], filepath.Join(dir, "cache", "debs", filepath.Base(m[len(m)-1])), 0o644)
	bin := filepath.Join(dir, "dpkgconf.test")
	copyFile(t, os.Args[0], bin, 0o755)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.count=1", "-test.v", "-test.run", "^(TestConfigure|TestConfigureFails|TestConfigureHang)$")
	tmp := filepath.Join(dir, "tmp")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp,
		"KILN_CACHE=" + filepath.Join(dir, "cache"), "CI=true"} // CI: a missing piece fails instead of skipping
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests as %s: %v\n%s", testenv.BuildUser, err, out)
	}
	for _, name := range []string{"TestConfigure", "TestConfigureFails", "TestConfigureHang"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass as %s:\n%s", name, testenv.BuildUser, out)
		}
	}
	if s := strays(dir); len(s) > 0 {
		t.Errorf("processes left running: %v", s)
	}
}
