package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"

	"github.com/kilnproject/kiln/internal/testenv"
)

// guestModules are loaded in this order; the kernel package ships them as modules.
var guestModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
	"drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
	"fs/fat/fat", "fs/fat/vfat", "fs/nls/nls_cp437", "fs/nls/nls_ascii", "fs/nls/nls_utf8",
}

const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /m/$m.ko || echo "insmod $m failed"; done
for i in $(seq 50); do [ -b /dev/vda2 ] && break; sleep 0.2; done
for p in 1 2; do
  mkdir -p /mnt/$p
  mount -t vfat -o ro,utf8 /dev/vda$p /mnt/$p || echo "mount vda$p failed"
done
echo KILN-BEGIN
cd /mnt && find . -type f | sort | while read -r f; do sha256sum "$f"; done
find . -type d | sort | sed 's/^/dir /'
dmesg | grep -i 'fat' | sed 's/^/dmesg /'
echo KILN-END
poweroff -f
`

// TestGuestKernelReadsPartitions boots a Debian kernel under QEMU with the image as a virtio disk and
// has it mount both FAT partitions with its vfat driver (the real consumer) and hash every file.
// It needs the default image's input packages (make inputs), QEMU, dpkg-deb and cpio.
func TestGuestKernelReadsPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a kernel under QEMU")
	}
	for _, tool := range []string{"qemu-system-x86_64", "dpkg-deb", "cpio", "tar"} {
		needTool(t, tool)
	}
	kernelDeb, busyboxDeb := cachedDeb(t, "linux-image-[0-9]*-amd64_*.deb"), cachedDeb(t, "busybox-static_*.deb")

	root := t.TempDir()
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	kdir := t.TempDir()
	sh(t, "", fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -x -C %q --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/block/virtio_blk.ko' './lib/modules/*/kernel/fs/fat/*' './lib/modules/*/kernel/fs/nls/nls_*.ko'", kernelDeb, kdir))
	sh(t, "", fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -x -C %q ./bin/busybox", busyboxDeb, root))
	vmlinuz, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*", "kernel"))
	if len(vmlinuz) != 1 || len(mods) != 1 {
		t.Fatalf("kernel package %s: no vmlinuz or modules", kernelDeb)
	}
	var names []string
	for _, m := range guestModules {
		src := filepath.Join(mods[0], m+".ko")
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("kernel package lacks a module: %v", err)
		}
		name := filepath.Base(m)
		writeFile(t, filepath.Join(root, "m", name+".ko"), data, 0o644)
		names = append(names, name)
	}
	writeFile(t, filepath.Join(root, "modules"), []byte(strings.Join(names, "\n")+"\n"), 0o644)
	writeFile(t, filepath.Join(root, "init"), []byte(guestInit), 0o755)
	for _, d := range []string{"proc", "sys", "dev", "mnt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, root, fmt.Sprintf("find . | cpio -o -H newc --quiet > %q", initrd))

	l := testLayout(t)
	img, _ := writeImage(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "512",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-kernel", vmlinuz[0], "-initrd", initrd, "-append", "console=ttyS0 panic=-1 loglevel=4",
		"-drive", "file="+img+",format=raw,if=virtio,readonly=on")
	out, err := cmd.CombinedOutput()
	console := string(bytes.ReplaceAll(out, []byte("\r"), nil))
	begin, end := strings.Index(console, "KILN-BEGIN\n"), strings.Index(console, "KILN-END")
	if err != nil || begin < 0 || end < begin {
		t.Fatalf("guest did not finish (%v); console:\n%s", err, console)
	}
	report := console[begin+len("KILN-BEGIN\n") : end]

	want := map[string]string{} // path in the guest -> sha256, or "dir"
	for i, files := range [][]fat.File{espEntries(), dataEntries()} {
		for _, f := range files {
			p := fmt.Sprintf("%d/%s", i+1, f.Path)
			if f.Dir {
				want[p] = "dir"
				continue
			}
			sum := sha256.Sum256(f.Data)
			want[p] = hex.EncodeToString(sum[:])
			for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
				want[d] = "dir"
			}
		}
	}
	got := map[string]string{}
	hashLine := regexp.MustCompile(`^([0-9a-f]{64})  (.+)$`)
	for _, line := range strings.Split(report, "\n") {
		switch m := hashLine.FindStringSubmatch(line); {
		case m != nil:
			got[strings.TrimPrefix(m[2], "./")] = m[1]
		case strings.HasPrefix(line, "dir ./"):
			got[strings.TrimPrefix(line, "dir ./")] = "dir"
		case strings.HasPrefix(line, "dmesg "):
			t.Errorf("the guest kernel complains: %s", strings.TrimPrefix(line, "dmesg "))
		}
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("guest sees %s as %q, want %q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("guest sees unexpected %s", p)
		}
	}
	if t.Failed() {
		t.Logf("guest console:\n%s", console)
	}
}

// cachedDeb finds an input package in the Kiln cache (make inputs fetches them).
func cachedDeb(t *testing.T, pattern string) string {
	t.Helper()
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(dir, "kiln")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "debs", pattern))
	if len(m) == 0 {
		testenv.Missing(t, "no %s in %s/debs (make inputs fetches it)", pattern, cache)
	}
	return m[len(m)-1]
}

func sh(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}
