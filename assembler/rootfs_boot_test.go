package assembler_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/vmrunner"
)

// checkRootLayout checks a package image's disk and root filesystem with the peers: sgdisk -v
// finds no problem, root-a and root-b are Linux partitions of the same size between the ESP and
// the data partition, root-a holds the root image of the update bundle (same sha256), and
// fsck.erofs extracts it, /etc/kiln/root-id holding the id on the UKI's command line.
func checkRootLayout(t *testing.T, res *assembler.Result) {
	t.Helper()
	m := loadManifest(t, res)
	if m.Root == nil || res.Root == "" {
		t.Fatal("a package image without a root filesystem in the manifest")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, testenv.Tool(t, "sgdisk"), "-v", res.Image).CombinedOutput(); err != nil || !regexp.MustCompile(`No problems found`).Match(out) {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	var names []string
	parts := map[string]assembler.Partition{}
	for _, p := range m.Partitions {
		names = append(names, p.Name)
		parts[p.Name] = p
	}
	if want := []string{"ESP", ota.RootSlotA, ota.RootSlotB, "data"}; !equalStrings(names, want) {
		t.Fatalf("partitions %q, want %q", names, want)
	}
	a, b := parts[ota.RootSlotA], parts[ota.RootSlotB]
	if a.Type != "linux" || b.Type != "linux" || a.Size != b.Size || a.Size < 2*m.Root.Size {
		t.Errorf("root partitions %+v %+v for a root of %d bytes", a, b, m.Root.Size)
	}
	bundleRoot, err := os.ReadFile(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(bundleRoot)) != m.Root.Size || sha256Hex(bundleRoot) != m.Root.SHA256 {
		t.Errorf("the bundle's root image does not match the manifest")
	}
	img, err := os.Open(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	inPart := make([]byte, m.Root.Size)
	if _, err := img.ReadAt(inPart, a.Offset); err != nil {
		t.Fatal(err)
	}
	if sha256Hex(inPart) != m.Root.SHA256 {
		t.Errorf("root-a does not hold the root image %s", m.Root.SHA256)
	}
	file := filepath.Join(t.TempDir(), "root.erofs")
	if err := os.WriteFile(file, inPart, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "root")
	if b, err := exec.CommandContext(ctx, testenv.Tool(t, "fsck.erofs"), "--extract="+out, file).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, b)
	}
	if id, err := os.ReadFile(filepath.Join(out, "etc/kiln/root-id")); err != nil || string(id) != m.Root.ID+"\n" {
		t.Errorf("root-id %q (%v), want %s", id, err, m.Root.ID)
	}
	for _, f := range []string{"usr/bin/busybox", "var/lib/dpkg/status", "etc/inittab", "etc/init.d/rcS"} {
		if _, err := os.Lstat(filepath.Join(out, f)); err != nil {
			t.Errorf("the root filesystem lacks /%s: %v", f, err)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// swapRoots copies the image (sparse) and moves its root from root-a to root-b, wiping the start
// of root-a; with both, it wipes root-b too (no root left).
func swapRoots(t *testing.T, res *assembler.Result, both bool) string {
	t.Helper()
	m := loadManifest(t, res)
	var a, b assembler.Partition
	for _, p := range m.Partitions {
		switch p.Name {
		case ota.RootSlotA:
			a = p
		case ota.RootSlotB:
			b = p
		}
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(res.Image))
	if out, err := exec.Command("cp", "--sparse=always", res.Image, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := make([]byte, m.Root.Size)
	if _, err := f.ReadAt(root, a.Offset); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	if both {
		root = zero
	}
	for _, w := range []struct {
		data []byte
		off  int64
	}{{root, b.Offset}, {zero, a.Offset}} {
		if _, err := f.WriteAt(w.data, w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// checkSlots boots the package image with its root moved to root-b (it boots from root-b), then
// with no root at all (init says so and reboots: the VM, run with -no-reboot, stops).
func checkSlots(t *testing.T, res *assembler.Result, ready *regexp.Regexp) {
	t.Helper()
	m := loadManifest(t, res)
	g := bootVM(t, vmrunner.Config{Image: swapRoots(t, res, false), Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024})
	g.expect(regexp.MustCompile(`kiln: root filesystem `+m.Root.ID+` on root-b`), bootTimeout)
	g.expect(ready, bootTimeout)
	g.send("\ncat /run/kiln/root\n")
	g.expect(regexp.MustCompile(`\nroot-b\r?\n`), bootTimeout)
	t.Logf("booted from root-b in %.1fs", time.Since(g.start).Seconds())
	g.vm.Stop()

	g = bootVM(t, vmrunner.Config{Image: swapRoots(t, res, true), Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024,
		ExtraArgs: []string{"-no-reboot"}})
	g.expect(regexp.MustCompile(`kiln: no partition named root-a or root-b holds root filesystem `+m.Root.ID), bootTimeout)
	g.expect(regexp.MustCompile(`kiln: rebooting`), 30*time.Second)
	g.waitStopped(30 * time.Second)
	t.Logf("without a root: rebooted %.1fs after boot", time.Since(g.start).Seconds())
}

// checkReadOnlyRoot checks, on the root shell of the serial console, that / is the read-only
// EROFS root from root-a: /usr cannot be written, /etc can (overlay).
func checkReadOnlyRoot(g *guest) {
	g.t.Helper()
	g.send("\ntouch /usr/x 2>/dev/null; echo usr-rc=$?; touch /etc/x && echo etc-rc=$?; echo slot=$(cat /run/kiln/root); findmnt -n -o FSTYPE,OPTIONS /\n")
	g.expect(regexp.MustCompile(`usr-rc=1`), bootTimeout)
	g.expect(regexp.MustCompile(`etc-rc=0`), bootTimeout)
	g.expect(regexp.MustCompile(`slot=root-a\r?\n`), bootTimeout)
	g.expect(regexp.MustCompile(`erofs +ro[, ]`), bootTimeout)
}
