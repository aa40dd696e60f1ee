package cpio

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
)

// FuzzWriteEntry writes one entry from arbitrary fields and reads the archive back with the
// independent parser: an accepted entry round-trips (name, mode, owner, contents, device numbers)
// in a well-formed archive; anything else is an error, never a panic or a malformed archive.
func FuzzWriteEntry(f *testing.F) {
	f.Add("etc/motd", uint32(0o644), uint32(0), uint32(0), []byte("hello\n"), "", uint32(0), uint32(0))
	f.Add("/bin/sh", uint32(fs.ModeSymlink|0o777), uint32(0), uint32(0), []byte(nil), "busybox", uint32(0), uint32(0))
	f.Add("dev/console", uint32(fs.ModeDevice|fs.ModeCharDevice|0o600), uint32(0), uint32(5), []byte(nil), "", uint32(5), uint32(1))
	f.Add("./data", uint32(fs.ModeDir|fs.ModeSetgid|0o2775), uint32(1000), uint32(1000), []byte(nil), "", uint32(0), uint32(0))
	f.Add("TRAILER!!!", uint32(0o644), uint32(0), uint32(0), []byte("x"), "", uint32(0), uint32(0))
	f.Add("a\x00b", uint32(0o644), uint32(0), uint32(0), []byte("x"), "", uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, name string, mode uint32, uid, gid uint32, data []byte, link string, major, minor uint32) {
		e := Entry{Name: name, Mode: fs.FileMode(mode), UID: uid, GID: gid, Data: data, Linkname: link, Major: major, Minor: minor}
		var buf bytes.Buffer
		w := NewWriter(&buf, 1704067200)
		if err := w.WriteEntry(&e); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Written() != int64(buf.Len()) {
			t.Fatalf("Written() = %d, wrote %d", w.Written(), buf.Len())
		}
		got := parse(t, buf.Bytes())
		if len(got) != 2 || got[1].name != trailer {
			t.Fatalf("%d entries, want the entry and the trailer", len(got))
		}
		p := got[0]
		clean := cleanName(name)
		if p.name != clean || strings.IndexByte(p.name, 0) >= 0 || p.name == trailer || p.name == "" {
			t.Fatalf("name %q came back as %q", name, p.name)
		}
		raw, err := rawMode(e.Mode)
		if err != nil || p.mode != raw || p.uid != uid || p.gid != gid {
			t.Fatalf("header mode %o uid %d gid %d, want %o %d %d (%v)", p.mode, p.uid, p.gid, raw, uid, gid, err)
		}
		var body []byte
		switch e.Mode.Type() {
		case 0:
			body = data
		case fs.ModeSymlink:
			body = []byte(link)
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			if p.rmaj != major || p.rmin != minor {
				t.Fatalf("device %d:%d came back as %d:%d", major, minor, p.rmaj, p.rmin)
			}
		}
		if !bytes.Equal(p.body, body) {
			t.Fatalf("contents of %d bytes came back as %d", len(body), len(p.body))
		}
	})
}
