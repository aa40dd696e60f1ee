package erofs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/internal/testenv"
)

// sampleFiles covers every layout: empty, inline tail, exact blocks, blocks plus tail, a tail too
// big to inline, directories over several blocks, symlinks, devices, special bits and ids that
// need extended inodes.
func sampleFiles(devices bool) []File {
	rnd := rand.New(rand.NewSource(1))
	data := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	files := []File{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/hostname", Mode: 0o644, Data: []byte("kiln\n")},
		{Path: "etc/empty", Mode: 0o600},
		{Path: "etc/shadow", Mode: 0o640, Data: []byte("root:*:1::::::\n"), GID: 42},
		{Path: "usr/bin/block", Mode: 0o755, Data: data(BlockSize)},
		{Path: "usr/bin/tail", Mode: 0o755, Data: data(3*BlockSize + 17)},
		{Path: "usr/bin/bigtail", Mode: 0o755, Data: data(BlockSize + 4090)},
		{Path: "usr/bin/sudo", Mode: 0o755 | fs.ModeSetuid, Data: data(100)},
		{Path: "usr/bin/wall", Mode: 0o755 | fs.ModeSetgid, Data: data(10), GID: 5},
		{Path: "usr/lib/large", Mode: 0o644, Data: data(300_000)},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "home/u", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000},
		{Path: "home/u/file", Mode: 0o644, Data: []byte("hi"), UID: 100000, GID: 70000},
		{Path: "bin", Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"},
		{Path: "lib/abs", Mode: fs.ModeSymlink | 0o777, Target: "/usr/lib/large"},
		{Path: "lib/longlink", Mode: fs.ModeSymlink | 0o777, Target: string(bytes.Repeat([]byte("d/"), 1000)) + "x"},
		{Path: "run", Mode: fs.ModeDir | 0o755},
	}
	for i := 0; i < 600; i++ {
		files = append(files, File{Path: fmt.Sprintf("usr/share/many/%04d-%s", i, bytes.Repeat([]byte("n"), i%40)), Mode: 0o644,
			Data: data(i * 7)})
	}
	files = append(files, File{Path: "usr/share/many/-first", Mode: 0o644, Data: []byte("sorts before .")})
	if devices {
		files = append(files,
			File{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
			File{Path: "dev/sda1", Mode: fs.ModeDevice | 0o660, Major: 8, Minor: 1, GID: 6},
			File{Path: "dev/big", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 259, Minor: 70000},
			File{Path: "run/fifo", Mode: fs.ModeNamedPipe | 0o644})
	}
	return files
}

func write(t *testing.T, files []File, mtime int64) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Write(ctx, &buf, files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(buf.Len()) || res.Size%BlockSize != 0 {
		t.Fatalf("size %d, wrote %d", res.Size, buf.Len())
	}
	img := filepath.Join(t.TempDir(), "root.erofs")
	if err := os.WriteFile(img, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return img, buf.Bytes()
}

// TestExtractMatches writes an image and extracts it with erofs-utils' fsck.erofs: every file,
// mode, owner, symlink, device node and content must come back as written.
func TestExtractMatches(t *testing.T) {
	fsck := testenv.Tool(t, "fsck.erofs")
	root := os.Geteuid() == 0
	if !root && testenv.CI() {
		t.Fatal("CI: runs as root, so owners and device nodes are checked")
	}
	files := sampleFiles(root)
	img, _ := write(t, files, 1700000000)
	out := filepath.Join(t.TempDir(), "x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, fsck, "--extract="+out, img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, b)
	}
	// fsck.erofs 1.5 extracts without the setuid, setgid and sticky bits: TestKernelMount checks them.
	checkTree(t, out, files, root, fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
}

// TestKernelMount writes an image to a loop device and mounts it with the kernel's erofs driver,
// the reader that boots it.
func TestKernelMount(t *testing.T) {
	if b, _ := os.ReadFile("/proc/filesystems"); !bytes.Contains(b, []byte("erofs")) {
		if exec.Command("modprobe", "erofs").Run() != nil {
			testenv.Missing(t, "the kernel has no erofs driver")
		}
	}
	files := sampleFiles(true)
	_, data := write(t, files, 1700000000)
	dev := testenv.LoopDrive(t, int64(len(data)), false)
	if err := os.WriteFile(dev, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "mount", "-t", "erofs", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, b)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	checkTree(t, mnt, files, true, 0)
}

// checkTree compares the tree at dir with files, ignoring the mode bits in ignore.
func checkTree(t *testing.T, dir string, files []File, owners bool, ignore fs.FileMode) {
	t.Helper()
	out, root := dir, owners
	seen := 0
	for _, f := range files {
		p := filepath.Join(out, f.Path)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		seen++
		if st.Mode()&^ignore != f.Mode&^ignore {
			t.Errorf("%s: mode %v, want %v", f.Path, st.Mode(), f.Mode)
		}
		uid, gid, _ := fstree.Owner(st)
		if root && (uid != f.UID || gid != f.GID) {
			t.Errorf("%s: owner %d:%d, want %d:%d", f.Path, uid, gid, f.UID, f.GID)
		}
		switch f.Mode.Type() {
		case 0:
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, f.Data) {
				t.Errorf("%s: content differs (%d bytes, want %d; %v)", f.Path, len(got), len(f.Data), err)
			}
		case fs.ModeSymlink:
			if got, err := os.Readlink(p); err != nil || got != f.Target {
				t.Errorf("%s: target %q, want %q (%v)", f.Path, got, f.Target, err)
			}
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			maj, minor, err := fstree.DeviceNumbers(st)
			if err != nil {
				t.Fatal(err)
			}
			if maj != f.Major || minor != f.Minor {
				t.Errorf("%s: device %d:%d, want %d:%d", f.Path, maj, minor, f.Major, f.Minor)
			}
		}
	}
	// Nothing more than what was written (and the parents it implies).
	n := 0
	filepath.WalkDir(out, func(string, fs.DirEntry, error) error { n++; return nil })
	if n < seen || n > seen+10 {
		t.Errorf("extracted %d entries for %d files", n, seen)
	}
}

// TestReproducible: the same files and time give the same bytes, whatever the list's order;
// another time gives others.
func TestReproducible(t *testing.T) {
	files := sampleFiles(true)
	_, a := write(t, files, 1700000000)
	rev := append([]File(nil), files...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	_, b := write(t, rev, 1700000000)
	if !bytes.Equal(a, b) {
		t.Error("same files in another order: different image")
	}
	_, c := write(t, files, 1700000001)
	if bytes.Equal(a, c) {
		t.Error("another build time: same image")
	}
}

func TestInvalid(t *testing.T) {
	for name, files := range map[string][]File{
		"dotdot":      {{Path: "../x", Mode: 0o644}},
		"unclean":     {{Path: "a//b", Mode: 0o644}},
		"twice":       {{Path: "a", Mode: 0o644}, {Path: "a", Mode: 0o644}},
		"file parent": {{Path: "a", Mode: 0o644}, {Path: "a/b", Mode: 0o644}},
		"no target":   {{Path: "l", Mode: fs.ModeSymlink | 0o777}},
		"irregular":   {{Path: "x", Mode: fs.ModeIrregular}},
	} {
		if _, err := Write(context.Background(), &bytes.Buffer{}, files, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, &bytes.Buffer{}, sampleFiles(false), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
