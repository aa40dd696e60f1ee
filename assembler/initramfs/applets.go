package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
)

// Applet is one busybox applet and the directory busybox would install its link in.
type Applet struct {
	Name string
	Dir  string // "bin", "sbin", "usr/bin", "usr/sbin" (or "" for the root)
}

// installDirs are busybox's BB_DIR_* values, in order.
var installDirs = []string{"", "bin", "sbin", "usr/bin", "usr/sbin"}

// anchors are applets whose install directory is the same in every busybox configuration; they
// identify the install-location table in the binary.
var anchors = map[string]int{"ls": 1, "sh": 1, "cat": 1, "mount": 1, "init": 2, "getty": 2,
	"modprobe": 2, "ifconfig": 2, "reboot": 2, "env": 3, "wc": 3, "tr": 3, "chroot": 4, "udhcpc": 2}

// ErrNoApplets means the busybox binary's applet table could not be found.
var ErrNoApplets = errors.New("no busybox applet table found")

// Applets reads the applet list of a busybox binary without running it, so images for any
// architecture can be built on any host: busybox keeps the applet names as one sorted, NUL-separated
// string ("[\0[[\0acpid\0…") and their install directories as a table of 4-bit entries
// (applet_install_loc). When the table cannot be identified unambiguously, every applet goes to
// bin except a few well-known system applets in sbin.
func Applets(busybox []byte) ([]Applet, error) {
	names, end := appletNames(busybox)
	if len(names) < 10 {
		return nil, fmt.Errorf("busybox: %w (is it a busybox binary?)", ErrNoApplets)
	}
	locs := installLocations(busybox, names, end)
	out := make([]Applet, len(names))
	for i, n := range names {
		dir := "bin"
		switch {
		case locs != nil:
			dir = installDirs[locs[i]]
		case anchors[n] == 2:
			dir = "sbin"
		}
		out[i] = Applet{Name: n, Dir: dir}
	}
	return out, nil
}

func validAppletName(s []byte) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// appletNames finds the longest run of sorted applet names that starts with "[" (the test
// applet, first in sort order) or otherwise the longest sorted run; it returns the names and the
// offset just past the table.
func appletNames(b []byte) ([]string, int) {
	var best []string
	bestEnd := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("\x00[\x00"))
		if i < 0 {
			break
		}
		start := off + i + 1
		var names []string
		p := start
		for p < len(b) {
			j := bytes.IndexByte(b[p:], 0)
			if j < 0 || !validAppletName(b[p:p+j]) {
				break
			}
			n := string(b[p : p+j])
			if len(names) > 0 && n <= names[len(names)-1] {
				break
			}
			names = append(names, n)
			p += j + 1
		}
		if len(names) > len(best) {
			best, bestEnd = names, p
		}
		off = start
	}
	return best, bestEnd
}

// installLocations finds applet_install_loc near the name table: (n+1)/2 bytes of two 4-bit
// directory indexes (0–4), low nibble first, matching every anchor applet that is present.
func installLocations(b []byte, names []string, near int) []int {
	n := len(names)
	size := (n + 1) / 2
	type anchor struct{ idx, loc int }
	var as []anchor
	for i, name := range names {
		if l, ok := anchors[name]; ok {
			as = append(as, anchor{i, l})
		}
	}
	if len(as) < 4 {
		return nil
	}
	sort.Slice(as, func(i, j int) bool { return as[i].idx < as[j].idx })
	nib := func(off, i int) int { return int(b[off+i/2]>>(4*(i%2))) & 0xf }
	lo, hi := max(0, near-1<<16), min(len(b)-size, near+1<<16)
	found := -1
	for off := lo; off <= hi; off++ {
		ok := true
		for _, a := range as {
			if nib(off, a.idx) != a.loc {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		for i := 0; i < n && ok; i++ {
			ok = nib(off, i) < len(installDirs)
		}
		if ok && n%2 == 1 && nib(off, n) != 0 {
			ok = false
		}
		if !ok {
			continue
		}
		if found >= 0 {
			return nil // ambiguous
		}
		found = off
	}
	if found < 0 {
		return nil
	}
	locs := make([]int, n)
	for i := range locs {
		locs[i] = nib(found, i)
	}
	return locs
}
