package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LoopDrive attaches a zero-filled file of size bytes to a free loop device, a stand-in for a USB
// stick, and returns the device's path; it is unmounted and detached at cleanup. With format set
// the drive holds a file system: vfat, or ext4 where the kernel has no vfat. It needs root and
// losetup (and the mkfs tools when formatting), through Missing.
func LoopDrive(t testing.TB, size int64, format bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root for loop devices")
	}
	losetup := Tool(t, "losetup")
	backing := filepath.Join(t.TempDir(), "stick")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	if format {
		mkfs := []string{Tool(t, "mkfs.vfat"), backing}
		if b, _ := os.ReadFile("/proc/filesystems"); !strings.Contains(string(b), "vfat") {
			mkfs = []string{Tool(t, "mkfs.ext4"), "-q", "-F", backing} // a kernel without vfat
		}
		if out, err := exec.Command(mkfs[0], mkfs[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", mkfs[0], err, out)
		}
	}
	out, err := exec.Command(losetup, "--find", "--show", "--direct-io=off", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		exec.Command("umount", "--recursive", "--lazy", dev).Run()
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}
