package flasher

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"
)

func TestFlashRawAndVerifyFromDevice(t *testing.T) {
	needRoot(t, "cmp")
	dir := t.TempDir()
	img := testImage(t, dir, 9<<20+1000) // not a multiple of the block size: the tail is completed in place
	dev := loopDevice(t, 16<<20)
	readBefore, _ := stat(t, dev)
	var phases []string
	res, err := Flash(context.Background(), img, []string{dev}, Options{HashImage: true, Progress: func(e progress.Event) {
		if e.Device != dev {
			t.Errorf("progress event without the device: %+v", e)
		}
		if len(phases) == 0 || phases[len(phases)-1] != e.Phase {
			phases = append(phases, e.Phase)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(img)
	if !res[0].Verified || res[0].Written != 9<<20+1000 || res[0].SHA256 != fmt.Sprintf("%x", sha256.Sum256(want)) {
		t.Fatalf("result %+v", res[0])
	}
	cmpDevice(t, dev, img)
	readAfter, _ := stat(t, dev)
	if got := (readAfter - readBefore) * 512; got < 9<<20+1000 {
		t.Fatalf("the drive served %d bytes of reads, less than the %d verified: verification did not read the device", got, 9<<20+1000)
	}
	if strings.Join(phases, ",") != "writing,verifying" {
		t.Errorf("phases %v", phases)
	}
}

func TestFlashDetectsFlippedByte(t *testing.T) {
	needRoot(t)
	img := testImage(t, t.TempDir(), 8<<20)
	dev := loopDevice(t, 8<<20)
	const at = 5<<20 + 123
	opts := Options{}
	opts.hooks.afterWrite = func(Device) {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		f.ReadAt(b, at)
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
		f.Sync()
	}
	res, err := Flash(context.Background(), img, []string{dev}, opts)
	var verr *VerifyError
	if !errors.As(err, &verr) || !errors.Is(err, ErrVerify) {
		t.Fatalf("want a verification error, got %v", err)
	}
	if verr.Offset != at {
		t.Fatalf("reported offset %d, flipped %d", verr.Offset, at)
	}
	if res[0].Verified || !strings.Contains(err.Error(), "5243003") {
		t.Fatalf("result %+v, message %q", res[0], err)
	}
}

func TestFlashWithBlockMapWritesOnlyMappedRanges(t *testing.T) {
	needRoot(t, "bmaptool", "cmp")
	dir := t.TempDir()
	img := filepath.Join(dir, "sparse.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	data := testImageBytes(t, 3<<20)
	for _, off := range []int64{0, 10 << 20, 20<<20 + 4096} {
		f.WriteAt(data, off)
	}
	f.Truncate(32 << 20)
	f.Close()
	// bmaptool is the peer: its map must drive Kiln's flash.
	run(t, "bmaptool", "create", "-o", img+".bmap", img)
	m, err := bmap.Load(img + ".bmap")
	if err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, 32<<20)
	_, w0 := stat(t, dev)
	res, err := Flash(context.Background(), img, []string{dev}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, w1 := stat(t, dev)
	written := (w1 - w0) * 512
	if written < m.MappedBytes() || written > m.MappedBytes()+1<<20 {
		t.Fatalf("wrote %d bytes to the device for %d mapped bytes of a %d-byte image", written, m.MappedBytes(), m.ImageSize)
	}
	if !res[0].Verified || res[0].Written != m.MappedBytes() {
		t.Fatalf("result %+v, mapped %d", res[0], m.MappedBytes())
	}
	cmpDevice(t, dev, img) // the device was zero-filled, so the unmapped ranges match too

	// A compressed image with the map beside the uncompressed name (X.img.bmap for X.img.zst).
	run(t, "zstd", "-q", "-T0", img, "-o", img+".zst")
	dev2 := loopDevice(t, 32<<20)
	_, w0 = stat(t, dev2)
	if _, err := Flash(context.Background(), img+".zst", []string{dev2}, Options{}); err != nil {
		t.Fatal(err)
	}
	_, w1 = stat(t, dev2)
	if written := (w1 - w0) * 512; written > m.MappedBytes()+1<<20 {
		t.Fatalf("compressed + block map wrote %d bytes for %d mapped", written, m.MappedBytes())
	}
	cmpDevice(t, dev2, img)
}

func testImageBytes(t *testing.T, size int) []byte {
	b, err := os.ReadFile(testImage(t, t.TempDir(), size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTooSmallDeviceRefusedUnchanged(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := testImage(t, dir, 8<<20)
	dev := loopDevice(t, 4<<20)
	if err := os.WriteFile(dev, []byte("previous contents"), 0); err != nil {
		t.Fatal(err)
	}
	before := deviceSum(t, dev)
	_, w0 := stat(t, dev)
	_, err := Flash(context.Background(), img, []string{dev}, Options{})
	if !errors.Is(err, ErrTooSmall) {
		t.Fatalf("want ErrTooSmall, got %v", err)
	}
	_, w1 := stat(t, dev)
	if deviceSum(t, dev) != before || w1 != w0 {
		t.Fatalf("the device changed (sectors written %d → %d)", w0, w1)
	}

	// With a block map, an image larger than the drive fits when the overflow is unmapped.
	sparse := filepath.Join(dir, "big.img")
	os.WriteFile(sparse, testImageBytes(t, 2<<20), 0o644)
	os.Truncate(sparse, 8<<20)
	run(t, "bmaptool", "create", "-o", sparse+".bmap", sparse)
	if _, err := Flash(context.Background(), sparse, []string{dev}, Options{}); err != nil {
		t.Fatalf("unmapped overflow: %v", err)
	}
}

func TestMountedDeviceIsUnmountedOrRefused(t *testing.T) {
	needRoot(t, "mkfs.vfat", "mkfs.ext4", "mount")
	img := testImage(t, t.TempDir(), 4<<20)
	dev := loopDevice(t, 16<<20)
	target := dev
	// The filesystem goes on a partition when the kernel can show loop partitions, else on the
	// whole drive (as on many USB sticks).
	if _, err := exec.LookPath("sfdisk"); err == nil {
		run(t, "sh", "-c", "echo 'start=2048, type=c' | sfdisk -q "+dev)
		exec.Command("blockdev", "--rereadpt", dev).Run()
		if _, err := os.Stat(dev + "p1"); err == nil {
			target = dev + "p1"
		}
	}
	t.Logf("filesystem on %s", target)
	mkfs(t, target)
	mnt := t.TempDir()
	run(t, "mount", target, mnt)
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })

	// Busy: a process works in the mounted directory.
	sleeper := exec.Command("sleep", "600")
	sleeper.Dir = mnt
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	_, err := Flash(context.Background(), img, []string{dev}, Options{})
	sleeper.Process.Kill()
	sleeper.Wait()
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "sleep") || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("want ErrBusy naming the mountpoint and the process, got %v", err)
	}

	// Not busy: unmounted, then flashed.
	if _, err := Flash(context.Background(), img, []string{dev}, Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), mnt) {
		t.Fatalf("%s still mounted", mnt)
	}
	cmpDevice(t, dev, img)
}

func TestNonBlockPathRefusedAndNothingCreated(t *testing.T) {
	img := testImage(t, t.TempDir(), 1<<20)
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("x"), 0o644)
	missing := []string{filepath.Join(dir, "sdz"), "/dev/kiln-test-no-such-drive"}
	for _, p := range append([]string{regular, "/dev/null", dir}, missing...) {
		_, err := Flash(context.Background(), img, []string{p}, Options{})
		if !errors.Is(err, ErrNotBlockDevice) {
			t.Errorf("%s: want ErrNotBlockDevice, got %v", p, err)
		}
	}
	for _, p := range missing {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created", p)
		}
	}
	if b, _ := os.ReadFile(regular); string(b) != "x" {
		t.Errorf("regular file changed")
	}
}

func TestDeviceFailingMidWrite(t *testing.T) {
	needRoot(t)
	img := testImage(t, t.TempDir(), 12<<20)
	for _, errno := range []error{unix.ENODEV, unix.EIO} {
		dev := loopDevice(t, 16<<20)
		opts := Options{}
		opts.hooks.open = func(d Device) (blockDevice, error) {
			real, err := openDevice(d)
			if err != nil {
				return nil, err
			}
			return &failingDevice{blockDevice: real, after: 6 << 20, err: errno}, nil
		}
		res, err := Flash(context.Background(), img, []string{dev}, opts)
		if !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "reinsert") {
			t.Fatalf("%v: want ErrRemoved telling what to do, got %v", errno, err)
		}
		if res[0].Err == nil || res[0].Verified {
			t.Fatalf("%v: result claims success: %+v", errno, res[0])
		}
	}
}

// failingDevice starts failing writes with err at byte offset after.
type failingDevice struct {
	blockDevice
	after int64
	err   error
}

func (f *failingDevice) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.after {
		return 0, &os.PathError{Op: "write", Path: "device", Err: f.err}
	}
	return f.blockDevice.WriteAt(p, off)
}

func TestTwoDevicesAtOnce(t *testing.T) {
	needRoot(t, "cmp")
	img := testImage(t, t.TempDir(), 10<<20)
	a, b := loopDevice(t, 12<<20), loopDevice(t, 16<<20)
	res, err := Flash(context.Background(), img, []string{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Verified {
			t.Fatalf("%+v", r)
		}
	}
	cmpDevice(t, a, img)
	cmpDevice(t, b, img)
	if _, err := Flash(context.Background(), img, []string{a, a}, Options{}); err == nil {
		t.Fatal("the same drive twice was accepted")
	}
}

func TestImageOnTargetDriveRefused(t *testing.T) {
	needRoot(t, "mkfs.vfat", "mkfs.ext4", "mount")
	dir := t.TempDir()
	img := testImage(t, dir, 1<<20)
	// A loop device backed by the image itself.
	self := run(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "-d", self).Run() })
	if _, err := Flash(context.Background(), img, []string{self}, Options{}); !errors.Is(err, ErrImageOnDevice) {
		t.Fatalf("loop backed by the image: want ErrImageOnDevice, got %v", err)
	}
	// The image stored on a filesystem of the target drive.
	dev := loopDevice(t, 16<<20)
	mkfs(t, dev)
	mnt := t.TempDir()
	run(t, "mount", dev, mnt)
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	run(t, "cp", img, mnt+"/on-drive.img")
	if _, err := Flash(context.Background(), mnt+"/on-drive.img", []string{dev}, Options{}); !errors.Is(err, ErrImageOnDevice) {
		t.Fatalf("image on the drive: want ErrImageOnDevice, got %v", err)
	}
}

func TestLookupLoopDevice(t *testing.T) {
	needRoot(t)
	dev := loopDevice(t, 8<<20)
	d, err := Lookup(dev)
	if err != nil {
		t.Fatal(err)
	}
	if d.Transport != "loop" || d.Size != 8<<20 || d.Internal || d.System || d.BackingFile == "" || d.LogicalBlockSize != 512 {
		t.Fatalf("%+v", d)
	}
	all, err := List(true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range all {
		found = found || x.Path == dev
		if x.Name == "vda" || strings.HasPrefix(x.Name, "sda") {
			if hidden, why := x.Hidden(); !hidden {
				t.Errorf("%s is not hidden (%s)", x.Name, why)
			}
		}
	}
	if !found {
		t.Fatalf("%s not listed", dev)
	}
}

// mkfs makes a FAT filesystem (what USB sticks carry) on dev, or ext4 when this kernel cannot
// mount FAT.
func mkfs(t *testing.T, dev string) {
	t.Helper()
	if b, _ := os.ReadFile("/proc/filesystems"); strings.Contains(string(b), "vfat") {
		run(t, "mkfs.vfat", dev)
		return
	}
	t.Log("the kernel has no vfat: using ext4")
	run(t, "mkfs.ext4", "-q", dev)
}

func TestWatchSignalsPluggedAndPulledDrives(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes := Watch(ctx, 20*time.Millisecond)
	wait := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-ctx.Done():
			t.Fatalf("no change signalled after a drive was %s", what)
		}
	}
	backing := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(backing, nil, 0o600)
	os.Truncate(backing, 1<<20)
	dev := run(t, "losetup", "--find", "--show", backing)
	defer exec.Command("losetup", "-d", dev).Run()
	wait("plugged")
	ds, err := List(false)
	if err != nil || !slices.ContainsFunc(ds, func(d Device) bool { return d.Path == dev }) {
		t.Fatalf("%s not listed after the signal: %v", dev, err)
	}
	run(t, "losetup", "-d", dev)
	wait("pulled")
}
