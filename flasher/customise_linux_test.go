package flasher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
	"github.com/kilnproject/kiln/internal/bmap"
)

const customKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0eJ7GpKx6ZQm4R4Hc0m2lJ7c4yO7nQ6Xh0b2J5s9B alice@laptop"

func customiser(t *testing.T) *customise.Customiser {
	t.Helper()
	c, err := customise.New(customise.Settings{
		Hostname: "pi-flashed",
		Users:    []recipe.User{{Name: "alice", SSHKeys: []string{customKey}}},
		WiFi:     &recipe.WiFi{SSID: "Lab", PSK: "lab-passphrase", Country: "GB"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cmpRange compares n bytes of a and b from off with cmp(1).
func cmpRange(t *testing.T, a, b string, off, n int64) {
	t.Helper()
	skip := strconv.FormatInt(off, 10)
	if out, err := exec.Command("cmp", "-i", skip+":"+skip, "-n", strconv.FormatInt(n, 10), a, b).CombinedOutput(); err != nil {
		t.Fatalf("bytes %d-%d differ between %s and %s: %v %s", off, off+n-1, a, b, err, out)
	}
}

// TestFlashCustomisesCompressedImage flashes an xz-compressed Raspberry Pi OS-shaped image with
// first-boot settings onto a loop drive: the boot partition read back from the drive holds the
// cloud-init files (fsck clean, schema valid, every other file intact), every byte outside it is the
// image's, verification passed against the changed bytes and the sha256 is the source's.
func TestFlashCustomisesCompressedImage(t *testing.T) {
	needRoot(t, "cmp", "xz")
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.RaspiOS)
	src, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "xz", "-T2", "-0", "-k", im.Path)
	dev := loopDevice(t, int64(len(src))+4<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	res, err := Flash(ctx, im.Path+".xz", []string{dev}, Options{Customise: customiser(t), HashImage: true, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flash %v write %.1fs verify %.1fs", time.Since(t0), res[0].WriteSecs, res[0].VerifySecs)
	r := res[0]
	if !r.Verified || !strings.Contains(r.Customised, "cloudinit-rpi") || r.SHA256 != fmt.Sprintf("%x", sha256.Sum256(src)) || r.Written != int64(len(src)) {
		t.Fatalf("result %+v", r)
	}
	cmpRange(t, dev, im.Path, 0, im.BootOffset)
	end := im.BootOffset + im.BootSize
	cmpRange(t, dev, im.Path, end, int64(len(src))-end)

	boot := filepath.Join(dir, "boot-from-drive.fat")
	d, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := os.Create(boot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(d, im.BootOffset, im.BootSize)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	files := customisetest.Check(t, boot, im)
	if !strings.Contains(files["user-data"], "hostname: pi-flashed") || !strings.Contains(files["user-data"], customKey) {
		t.Fatalf("user-data on the drive:\n%s", files["user-data"])
	}
	if gen := customisetest.Netplan(t, files["network-config"]); !strings.Contains(gen, "Lab") {
		t.Fatalf("netplan output lacks the network:\n%s", gen)
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "kiln-customise-") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	}
}

// TestFlashCustomisesFAT12: a small board image whose boot partition is FAT12 is customised while
// it is flashed onto a loop drive: verification passes, the partition read back is fsck clean with
// the new user-data and every other file intact, and every byte outside it is the image's.
func TestFlashCustomisesFAT12(t *testing.T) {
	needRoot(t, "cmp")
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Boot12)
	fi, err := os.Stat(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, fi.Size())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Flash(ctx, im.Path, []string{dev}, Options{Customise: customiser(t), TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; !r.Verified || !strings.Contains(r.Customised, "user-data") {
		t.Fatalf("result %+v", r)
	}
	cmpRange(t, dev, im.Path, 0, im.BootOffset)
	end := im.BootOffset + im.BootSize
	cmpRange(t, dev, im.Path, end, fi.Size()-end)
	d, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boot := filepath.Join(dir, "boot-from-drive.fat")
	out, err := os.Create(boot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(d, im.BootOffset, im.BootSize)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if files := customisetest.Check(t, boot, im); !strings.Contains(files["user-data"], "hostname: pi-flashed") {
		t.Fatalf("user-data on the drive:\n%s", files["user-data"])
	}
}

// TestFlashUnknownFormatUnchanged: an image without cloud-init is written byte for byte, with a
// warning saying the settings were not written.
func TestFlashUnknownFormatUnchanged(t *testing.T) {
	needRoot(t, "cmp")
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Plain)
	fi, _ := os.Stat(im.Path)
	dev := loopDevice(t, fi.Size())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Flash(ctx, im.Path, []string{dev}, Options{Customise: customiser(t), TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Customised != "" || len(res[0].Warnings) != 1 || !strings.Contains(res[0].Warnings[0], "flashed unchanged") {
		t.Fatalf("result %+v", res[0])
	}
	cmpDevice(t, dev, im.Path)
}

// TestFlashCustomiseTruncatedImage: an image that ends inside its boot partition fails as partly
// written, never as a success.
func TestFlashCustomiseTruncatedImage(t *testing.T) {
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.NoCloud)
	if err := os.Truncate(im.Path, im.BootOffset+im.BootSize/2); err != nil {
		t.Fatal(err)
	}
	mem := &memDevice{data: make([]byte, 64<<20)}
	opts := memOptions(mem)
	opts.Customise, opts.TempDir = customiser(t), dir
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Flash(ctx, im.Path, []string{"/dev/mem-test"}, opts)
	if err == nil || !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("error %v", err)
	}
}

// TestHelperCustomises: first-boot settings reach the privileged helper (the desktop app's path),
// which writes them; settings that fail their checks are refused before anything is written.
func TestHelperCustomises(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Ubuntu)
	fi, _ := os.Stat(im.Path)
	dev := loopDevice(t, fi.Size())
	set := customise.Settings{Hostname: "via-helper", Users: []recipe.User{{Name: "carol", SSHKeys: []string{customKey}}}}
	res, err, _ := helperPipe(t, HelperRequest{Image: im.Path, Devices: []string{dev}, Settings: &set}, nil)
	if err != nil || len(res) != 1 || !res[0].Verified || !strings.Contains(res[0].Customised, "cloudinit") {
		t.Fatalf("%v %+v", err, res)
	}
	d, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boot := filepath.Join(dir, "boot.fat")
	out, _ := os.Create(boot)
	io.Copy(out, io.NewSectionReader(d, im.BootOffset, im.BootSize))
	out.Close()
	if ud := customisetest.Check(t, boot, im)["user-data"]; !strings.Contains(ud, "hostname: via-helper") || !strings.Contains(ud, "name: carol") {
		t.Fatalf("user-data on the drive:\n%s", ud)
	}

	before := deviceSum(t, dev)
	bad := customise.Settings{Hostname: "bad host"}
	if _, err, _ := helperPipe(t, HelperRequest{Image: im.Path, Devices: []string{dev}, Settings: &bad}, nil); err == nil || !strings.Contains(err.Error(), "bad hostname") {
		t.Fatalf("bad settings: %v", err)
	}
	if deviceSum(t, dev) != before {
		t.Fatal("the drive changed although the settings were refused")
	}
}

// TestFlashCustomisesPartitionInFirstMiB: a boot partition that starts inside the first MiB (held
// back and written last) is customised too, and the bytes around it are the image's.
func TestFlashCustomisesPartitionInFirstMiB(t *testing.T) {
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.NoCloud)
	src, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	mem := &memDevice{data: make([]byte, len(src)+1<<20)}
	opts := memOptions(mem)
	opts.Customise, opts.TempDir = customiser(t), dir
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Flash(ctx, im.Path, []string{"/dev/mem-test"}, opts)
	if err != nil || !res[0].Verified || !strings.Contains(res[0].Customised, "NoCloud seed") {
		t.Fatalf("%v %+v", err, res)
	}
	end := im.BootOffset + im.BootSize
	if !bytes.Equal(mem.data[:im.BootOffset], src[:im.BootOffset]) || !bytes.Equal(mem.data[end:len(src)], src[end:]) {
		t.Fatal("bytes outside the boot partition differ from the image")
	}
	boot := filepath.Join(dir, "boot.fat")
	if err := os.WriteFile(boot, mem.data[im.BootOffset:end], 0o600); err != nil {
		t.Fatal(err)
	}
	if ud := customisetest.Check(t, boot, im)["user-data"]; !strings.Contains(ud, "hostname: pi-flashed") {
		t.Fatalf("user-data:\n%s", ud)
	}
}

// bigPartition claims a boot partition larger than Kiln collects.
type bigPartition struct{}

func (bigPartition) Locate([]byte) (int64, int64, string, error) {
	return 4 << 20, MaxCustomisedPartition + 1, "", nil
}

func (bigPartition) Apply(context.Context, *os.File, int64) (bool, string, error) {
	return false, "", errors.New("not reached")
}

// TestFlashRefusesHugeBootPartition: a boot partition beyond the cap stops the flash with a clear
// error before a byte is written.
func TestFlashRefusesHugeBootPartition(t *testing.T) {
	img := testImage(t, t.TempDir(), 8<<20)
	mem := &memDevice{data: make([]byte, 16<<20)}
	opts := memOptions(mem)
	opts.Customise = bigPartition{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Flash(ctx, img, []string{"/dev/mem-test"}, opts)
	if err == nil || !strings.Contains(err.Error(), "flash without first-boot settings") || mem.writes != 0 {
		t.Fatalf("error %v, %d bytes written", err, mem.writes)
	}
}

// TestFlashCustomisesWithBlockMap: with a block map, the customised boot partition is written in
// full (its map checksums describe the unchanged bytes, so they are not held against it) and the
// rest of the image by the map: unmapped blocks outside the partition are not written.
func TestFlashCustomisesWithBlockMap(t *testing.T) {
	needRoot(t, "cmp")
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.RaspiOS)
	f, err := os.Open(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bmap.Create(f, 4096)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := m.Marshal()
	if err := os.WriteFile(im.Path+".bmap", data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A hole outside the boot partition, to show that unmapped blocks are left alone.
	end := im.BootOffset + im.BootSize
	var hole int64 = -1
	for i, r := range m.Ranges {
		off, n := m.Bounds(r)
		next := m.ImageSize
		if i+1 < len(m.Ranges) {
			next, _ = m.Bounds(m.Ranges[i+1])
		}
		if start := off + n; next-start >= 1<<20 && start >= end {
			hole = start
			break
		}
	}
	if hole < 0 {
		t.Fatalf("the test image has no 1 MiB hole after its boot partition (ranges %v)", m.Ranges)
	}
	dev := loopDevice(t, m.ImageSize+4<<20)
	pattern := bytes.Repeat([]byte{0xa5}, 1<<20)
	d, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(pattern, hole); err != nil {
		t.Fatal(err)
	}
	d.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Flash(ctx, im.Path, []string{dev}, Options{Customise: customiser(t), TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if !r.Verified || !strings.Contains(r.Customised, "cloudinit-rpi") || r.Written >= m.ImageSize || r.Written < im.BootSize {
		t.Fatalf("result %+v (image %d bytes, %d mapped, boot partition %d)", r, m.ImageSize, m.MappedBytes(), im.BootSize)
	}
	for _, rg := range m.Ranges { // every mapped byte outside the partition is the image's
		off, n := m.Bounds(rg)
		if off+n <= im.BootOffset || off >= end {
			cmpRange(t, dev, im.Path, off, n)
		}
	}
	got := make([]byte, 1<<20)
	d, _ = os.Open(dev)
	defer d.Close()
	if _, err := d.ReadAt(got, hole); err != nil || !bytes.Equal(got, pattern) {
		t.Fatalf("an unmapped block at byte %d was written (%v)", hole, err)
	}
	boot := filepath.Join(dir, "boot-from-drive.fat")
	out, _ := os.Create(boot)
	if _, err := io.Copy(out, io.NewSectionReader(d, im.BootOffset, im.BootSize)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if files := customisetest.Check(t, boot, im); !strings.Contains(files["user-data"], "hostname: pi-flashed") {
		t.Fatalf("user-data on the drive:\n%s", files["user-data"])
	}
}
