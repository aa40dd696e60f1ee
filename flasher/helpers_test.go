package flasher

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// needRoot skips a test that needs root and loop devices, or fails it under CI=true.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root (loop devices)"
	}
	for _, tool := range append([]string{"losetup"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool
		}
	}
	if missing == "" {
		if _, err := os.Stat("/dev/loop-control"); err != nil {
			missing = "/dev/loop-control"
		}
	}
	if missing != "" {
		testenv.Missing(t, "needs %s", missing)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches a zero-filled file of size bytes to a free loop device, detached at cleanup.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	return testenv.LoopDrive(t, size, false)
}

// stat returns the sectors read and written counters of /sys/block/NAME/stat.
func stat(t *testing.T, dev string) (read, written int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	read, _ = strconv.ParseInt(f[2], 10, 64)
	written, _ = strconv.ParseInt(f[6], 10, 64)
	return read, written
}

// testImage writes an image of size bytes with varied data (some zero runs, some random) and
// returns its path.
func testImage(t *testing.T, dir string, size int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	data := make([]byte, size)
	for off := 0; off < size; off += 64 << 10 {
		end := min(off+64<<10, size)
		switch (off / (64 << 10)) % 3 {
		case 0:
			for i := off; i < end; i += 8 {
				v := rng.Uint64()
				for k := 0; k < 8 && i+k < end; k++ {
					data[i+k] = byte(v >> (8 * k))
				}
			}
		case 1:
			copy(data[off:end], bytes.Repeat([]byte("kiln image "), (end-off)/11+1))
		}
	}
	p := filepath.Join(dir, "test.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cmpDevice compares the first bytes of dev with file using cmp(1).
func cmpDevice(t *testing.T, dev, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cmp", "-n", strconv.FormatInt(fi.Size(), 10), dev, file).CombinedOutput(); err != nil {
		t.Fatalf("cmp %s %s: %v %s", dev, file, err, out)
	}
}

func deviceSum(t *testing.T, dev string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// memDevice is an in-memory drive for pipeline tests without root.
type memDevice struct {
	mu     sync.Mutex
	data   []byte
	writes int64
	// fail, when set, is called before each write and may return an injected error.
	fail func(off int64) error
}

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if m.fail != nil {
		if err := m.fail(off); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.data)) {
		return 0, os.ErrInvalid
	}
	m.writes += int64(len(p))
	return copy(m.data[off:], p), nil
}

func (m *memDevice) Sync() error      { return nil }
func (m *memDevice) Close() error     { return nil }
func (m *memDevice) DropCache() error { return nil }

// memOptions returns options that flash to mem instead of a real drive.
func memOptions(mem *memDevice) Options {
	d := Device{Path: "/dev/mem-test", Name: "mem-test", Size: int64(len(mem.data)), LogicalBlockSize: 512, Transport: "usb", Removable: true}
	return Options{hooks: hooks{
		lookup: func(string) (Device, error) { return d, nil },
		open:   func(Device) (blockDevice, error) { return mem, nil },
	}}
}
