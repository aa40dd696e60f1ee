package disk

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/fat"
)

// vfatInKernel reports whether the running kernel can mount vfat (loading the module if need be).
func vfatInKernel() bool {
	if b, err := os.ReadFile("/proc/filesystems"); err == nil && bytes.Contains(b, []byte("\tvfat\n")) {
		return true
	}
	if exec.Command("modprobe", "vfat").Run() == nil {
		b, _ := os.ReadFile("/proc/filesystems")
		return bytes.Contains(b, []byte("\tvfat\n"))
	}
	return false
}

// TestKernelMountsPartitions mounts both FAT partitions of an image through loop devices and reads files through the kernel's vfat driver, the filesystem's real consumer.
func TestKernelMountsPartitions(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("loop devices need root: run the tests as root under CI")
		}
		t.Skip("loop devices need root")
	}
	needTool(t, "losetup")
	needTool(t, "mount")
	if !vfatInKernel() {
		// The kernel is the host's, not something CI can install; the QEMU boot tests of the
		// assembler mount these partitions in a guest kernel instead.
		t.Skip("the running kernel has no vfat support (see /proc/filesystems)")
	}
	img, res := writeImage(t, testLayout(t))
	for i, entries := range [][]fat.File{espEntries(), dataEntries()} {
		p := res.Partitions[i]
		// One loop device per partition, at its offset: partition scanning needs udev to create nodes.
		out, err := exec.Command("losetup", "--find", "--show", "--read-only",
			"--offset", fmt.Sprint(p.Start), "--sizelimit", fmt.Sprint(p.Size), img).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v %s", dev, err, out)
			}
		})
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "vfat", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v %s", dev, err, out)
		}
		func() {
			defer func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v %s", mnt, err, out)
				}
			}()
			for _, e := range entries {
				p := filepath.Join(mnt, e.Path)
				st, err := os.Stat(p)
				if err != nil {
					t.Errorf("%s: %v", dev, err)
					continue
				}
				if e.Dir {
					if !st.IsDir() {
						t.Errorf("%s: %s is not a directory", dev, e.Path)
					}
					continue
				}
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, e.Data) {
					t.Errorf("%s: %s read back wrong (%v)", dev, e.Path, err)
				}
			}
		}()
	}
}
