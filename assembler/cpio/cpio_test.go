package cpio

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// needTool skips the test when a peer tool is missing, except under CI where it must be installed.
func needTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

func sample() []Entry {
	return []Entry{
		{Name: "bin", Mode: fs.ModeDir | 0o755},
		{Name: "bin/busybox", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")},
		{Name: "bin/sh", Mode: fs.ModeSymlink | 0o777, Linkname: "busybox"},
		{Name: "etc", Mode: fs.ModeDir | 0o755},
		{Name: "etc/empty", Mode: 0o644},
		{Name: "etc/odd-name with space", Mode: 0o600, Data: []byte("x")},
		{Name: "etc/ssh", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000},
		{Name: "etc/ssh/key", Mode: 0o600, UID: 1000, GID: 1000, Data: bytes.Repeat([]byte("k"), 4099)},
		{Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Name: "usr", Mode: fs.ModeDir | 0o755},
		{Name: "usr/bin", Mode: fs.ModeDir | 0o755},
		{Name: "usr/bin/su", Mode: fs.ModeSetuid | 0o755, Data: []byte("su")},
	}
}

func archive(t *testing.T, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := WriteAll(&buf, entries, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteAll reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	a, b := archive(t, sample()), archive(t, sample())
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same entries differ")
	}
	if len(a)%4 != 0 {
		t.Fatalf("archive length %d is not a multiple of 4", len(a))
	}
}

// parsed is one header as read back by a minimal independent parser.
type parsed struct {
	name                                    string
	ino, mode, uid, gid, nlink, mtime, size uint32
	rmaj, rmin                              uint32
	body                                    []byte
}

func parse(t *testing.T, data []byte) []parsed {
	t.Helper()
	var out []parsed
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("entry at offset %d is not 4-byte aligned", off)
		}
		h := data[off : off+headerSize]
		if string(h[:6]) != magic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		f := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		namesize := int(f(11))
		name := string(data[off+headerSize : off+headerSize+namesize-1])
		if data[off+headerSize+namesize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += headerSize + namesize
		off += (4 - off%4) % 4
		p := parsed{name: name, ino: f(0), mode: f(1), uid: f(2), gid: f(3), nlink: f(4), mtime: f(5),
			size: f(6), rmaj: f(9), rmin: f(10)}
		p.body = data[off : off+int(p.size)]
		off += int(p.size)
		off += (4 - off%4) % 4
		out = append(out, p)
		if name == trailer {
			if off != len(data) {
				t.Fatalf("%d bytes after the trailer", len(data)-off)
			}
			return out
		}
	}
}

func TestHeaders(t *testing.T) {
	entries := append(sample(),
		Entry{Name: "dev", Mode: fs.ModeDir | 0o755},
		Entry{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		Entry{Name: "dev/sda", Mode: fs.ModeDevice | 0o660, Major: 8, Minor: 0},
		Entry{Name: "dev/fifo", Mode: fs.ModeNamedPipe | 0o644})
	got := parse(t, archive(t, entries))
	if len(got) != len(entries)+1 {
		t.Fatalf("got %d entries, want %d", len(got), len(entries)+1)
	}
	want := map[string]struct{ mode, nlink uint32 }{
		"bin":         {0o40755, 3 - 1}, // no subdirectories
		"usr":         {0o40755, 3},     // usr/bin
		"tmp":         {0o41777, 2},
		"bin/sh":      {0o120777, 1},
		"usr/bin/su":  {0o104755, 1},
		"dev/console": {0o20600, 1},
		"dev/sda":     {0o60660, 1},
		"dev/fifo":    {0o10644, 1},
		"etc/empty":   {0o100644, 1},
	}
	for i, p := range got {
		if p.name == trailer {
			if p.ino != 0 || p.mode != 0 || p.size != 0 {
				t.Errorf("trailer %+v", p)
			}
			continue
		}
		if p.ino != uint32(i+1) {
			t.Errorf("%s: inode %d, want %d", p.name, p.ino, i+1)
		}
		if p.mtime != 1700000000 {
			t.Errorf("%s: mtime %d", p.name, p.mtime)
		}
		if w, ok := want[p.name]; ok && (p.mode != w.mode || p.nlink != w.nlink) {
			t.Errorf("%s: mode %o nlink %d, want %o %d", p.name, p.mode, p.nlink, w.mode, w.nlink)
		}
		switch p.name {
		case "bin/sh":
			if string(p.body) != "busybox" {
				t.Errorf("symlink body %q", p.body)
			}
		case "dev/console":
			if p.rmaj != 5 || p.rmin != 1 {
				t.Errorf("console rdev %d:%d", p.rmaj, p.rmin)
			}
		case "etc/ssh/key":
			if p.uid != 1000 || p.gid != 1000 || len(p.body) != 4099 {
				t.Errorf("key: uid %d gid %d size %d", p.uid, p.gid, len(p.body))
			}
		}
	}
}

func TestRejects(t *testing.T) {
	for _, e := range []Entry{
		{Name: "", Mode: 0o644},
		{Name: ".", Mode: fs.ModeDir | 0o755},
		{Name: "/", Mode: fs.ModeDir | 0o755},
		{Name: "TRAILER!!!", Mode: 0o644},
		{Name: "l", Mode: fs.ModeSymlink | 0o777},
		{Name: "x", Mode: fs.ModeIrregular | 0o644},
	} {
		w := NewWriter(&bytes.Buffer{}, 0)
		if err := w.WriteEntry(&e); err == nil {
			t.Errorf("entry %+v accepted", e)
		}
	}
	w := NewWriter(&bytes.Buffer{}, 0)
	_ = w.Close()
	if err := w.WriteEntry(&Entry{Name: "a", Mode: 0o644}); err != ErrClosed {
		t.Errorf("write after close: %v", err)
	}
}

func TestLeadingSlashStripped(t *testing.T) {
	got := parse(t, archive(t, []Entry{{Name: "/./etc", Mode: fs.ModeDir | 0o755}}))
	if got[0].name != "etc" {
		t.Fatalf("name %q", got[0].name)
	}
}

func list(t *testing.T, data []byte, name string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

func names(entries []Entry) []string {
	var n []string
	for _, e := range entries {
		n = append(n, e.Name)
	}
	return n
}

func TestGNUCpioLists(t *testing.T) {
	cpio := needTool(t, "cpio")
	got := list(t, archive(t, sample()), cpio, "-t", "--quiet")
	if strings.Join(got, "\n") != strings.Join(names(sample()), "\n") {
		t.Fatalf("cpio -t:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(names(sample()), "\n"))
	}
}

func TestBusyboxCpioLists(t *testing.T) {
	bb := needTool(t, "busybox")
	got := list(t, archive(t, sample()), bb, "cpio", "-t")
	if strings.Join(got, "\n") != strings.Join(names(sample()), "\n") {
		t.Fatalf("busybox cpio -t:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(names(sample()), "\n"))
	}
}

func TestGNUCpioListsDevices(t *testing.T) {
	cpio := needTool(t, "cpio")
	entries := []Entry{
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
	}
	cmd := exec.Command(cpio, "-tv", "--quiet", "--numeric-uid-gid")
	cmd.Stdin = bytes.NewReader(archive(t, entries))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, re := range []string{`^crw-------\s+1\s+0\s+0\s+5,\s+1\s.*dev/console$`, `^crw-rw-rw-\s+1\s+0\s+0\s+1,\s+3\s.*dev/null$`} {
		if !regexp.MustCompile(re).MatchString(lines[i+1]) {
			t.Errorf("cpio -tv line %q does not match %s", lines[i+1], re)
		}
	}
}

// TestExtract unpacks the archive with GNU cpio and compares contents, modes and symlinks.
func TestExtract(t *testing.T) {
	cpio := needTool(t, "cpio")
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive(t, sample()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	for _, e := range sample() {
		p := filepath.Join(dir, e.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		// Directory sticky/setuid bits survive extraction only for root; compare permissions.
		if fi.Mode().Type() != e.Mode.Type() || fi.Mode().Perm() != e.Mode.Perm() {
			t.Errorf("%s: mode %v, want %v", e.Name, fi.Mode(), e.Mode)
		}
		if fi.ModTime().Unix() != 1700000000 && fi.Mode().IsRegular() {
			t.Errorf("%s: mtime %v", e.Name, fi.ModTime())
		}
		switch {
		case e.Mode&fs.ModeSymlink != 0:
			if l, _ := os.Readlink(p); l != e.Linkname {
				t.Errorf("%s -> %q, want %q", e.Name, l, e.Linkname)
			}
		case e.Mode.IsRegular():
			if b, _ := os.ReadFile(p); !bytes.Equal(b, e.Data) {
				t.Errorf("%s: content differs", e.Name)
			}
		}
	}
}
