// Package fstree holds the in-memory tree of files that becomes a filesystem: the initramfs root or
// a FAT partition. Files come from code (AddFile, AddDir, AddSymlink, AddDevice), from Debian
// packages (AddDeb), from overlay directories (AddOverlayDir) and from tarballs (AddTarball).
//
// The tree is the safety boundary for inputs: entries whose path climbs out of the root ("..",
// absolute names in archives), relative symlinks that point above the root, hard links to files
// outside the tree and, unless AllowDevices is set, device nodes from inputs are refused with an
// error naming the entry and where it came from. Two sources writing the same file is an error
// unless Replace is set (overlay semantics: the later source wins). Directories merge.
//
// Walk visits the nodes in a deterministic order, parents before children, so that writers
// (cpio, FAT) produce the same bytes from the same inputs.
package fstree

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Sentinel errors; the errors returned are *EntryError values wrapping one of them.
var (
	ErrUnsafe = errors.New("entry escapes the image root")
	ErrDevice = errors.New("device node not allowed")
	ErrExists = errors.New("path already exists")
	ErrType   = errors.New("unsupported entry")
	// ErrTooLarge: an input holds more than the tree's limits allow.
	ErrTooLarge = errors.New("input too large")
)

// EntryError reports a refused entry.
type EntryError struct {
	Path   string // the entry's path as its source names it
	Origin string // where it came from
	Err    error  // a sentinel above
	Reason string // details and what to do
}

func (e *EntryError) Error() string {
	o := ""
	if e.Origin != "" {
		o = " (from " + e.Origin + ")"
	}
	return fmt.Sprintf("%s%s: %v: %s", e.Path, o, e.Err, e.Reason)
}

func (e *EntryError) Unwrap() error { return e.Err }

// Node is one entry of the tree.
type Node struct {
	Path         string      // clean, slash-separated, relative to the root, no leading '/'; "" is the root
	Mode         fs.FileMode // permissions and type bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice, ...)
	Data         []byte      // contents of a regular file
	Target       string      // symlink target, as written
	Major, Minor uint32      // device numbers
	UID, GID     int
	Origin       string // e.g. "busybox-static 1:1.35.0-4 /bin/busybox", "recipe:files[2]", "overlay:dir/x"
}

// IsDir, IsRegular and IsSymlink report the node's type.
func (n *Node) IsDir() bool     { return n.Mode.IsDir() }
func (n *Node) IsRegular() bool { return n.Mode.IsRegular() }
func (n *Node) IsSymlink() bool { return n.Mode&fs.ModeSymlink != 0 }

// Tree is a set of nodes keyed by path. The zero value is not usable; call New.
type Tree struct {
	// Replace lets a later file, symlink or device replace one at the same path (overlay
	// semantics). When false, adding a second non-directory at a path is an ErrExists error.
	Replace bool
	// AllowDevices lets AddDeb, AddOverlayDir and AddTarball add device nodes (AddDevice always
	// may).
	AllowDevices bool
	// Limits bound what inputs may add; the zero value sets no limit.
	Limits Limits

	nodes map[string]*Node
	size  int64
}

// Limits bound a tree filled from untrusted inputs. They are checked before a file's contents are
// read, so an archive header claiming gigabytes costs nothing; 0 means no limit.
type Limits struct {
	File    int64 // bytes in one regular file
	Total   int64 // bytes in all regular files together
	Entries int   // nodes, the root included
}

// room checks that a file of size bytes (replacing one of old bytes) fits the limits.
func (t *Tree) room(name, origin string, size, old int64) error {
	l := t.Limits
	switch {
	case l.File > 0 && size > l.File:
		return &EntryError{Path: name, Origin: origin, Err: ErrTooLarge,
			Reason: fmt.Sprintf("%d bytes is more than the %d a file may hold here (the partition it goes into); leave it out of the image", size, l.File)}
	case l.Total > 0 && t.size-old+size > l.Total:
		return &EntryError{Path: name, Origin: origin, Err: ErrTooLarge,
			Reason: fmt.Sprintf("the files added so far and this one (%d bytes) exceed the %d bytes the image has room for", size, l.Total)}
	}
	return nil
}

// fileRoom checks, before its contents are read, that a file of size bytes at p fits the limits.
func (t *Tree) fileRoom(p, name, origin string, size int64) error {
	var old int64
	if c, err := CleanPath(p); err == nil {
		if n := t.nodes[c]; n != nil {
			old = int64(len(n.Data))
		}
	}
	return t.room(name, origin, size, old)
}

// New returns a tree holding only the root directory (mode 0755).
func New() *Tree {
	return &Tree{nodes: map[string]*Node{"": {Path: "", Mode: fs.ModeDir | 0o755, Origin: "root"}}}
}

// CleanPath checks an in-image path and returns it in the tree's form: relative, slash-separated,
// without "." components. A leading '/' is accepted (image paths are absolute inside the image);
// ".." components, empty names and NUL bytes are refused.
func CleanPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	var parts []string
	for _, c := range strings.Split(strings.ReplaceAll(p, `\`, "/"), "/") {
		switch c {
		case "", ".":
		case "..":
			return "", errors.New(`path climbs out of the image root with ".."`)
		default:
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/"), nil
}

// Get returns the node at path (in any form CleanPath accepts), or nil.
func (t *Tree) Get(p string) *Node {
	c, err := CleanPath(p)
	if err != nil {
		return nil
	}
	return t.nodes[c]
}

// Len is the number of nodes, the root included.
func (t *Tree) Len() int { return len(t.nodes) }

// Size is the total size of the regular files' contents in bytes.
func (t *Tree) Size() int64 { return t.size }

// Remove deletes the node at p and everything below it; it reports whether anything was removed.
func (t *Tree) Remove(p string) bool {
	c, err := CleanPath(p)
	if err != nil || c == "" {
		return false
	}
	n, ok := t.nodes[c]
	if !ok {
		return false
	}
	if n.IsDir() {
		for k, m := range t.nodes {
			if strings.HasPrefix(k, c+"/") {
				t.size -= int64(len(m.Data))
				delete(t.nodes, k)
			}
		}
	}
	t.size -= int64(len(n.Data))
	delete(t.nodes, c)
	return true
}

// Walk calls fn for every node, the root first, parents before children, siblings in byte order
// of their names. If fn returns fs.SkipAll, Walk stops and returns nil.
func (t *Tree) Walk(fn func(n *Node) error) error {
	for _, n := range t.Sorted() {
		if err := fn(n); err != nil {
			if errors.Is(err, fs.SkipAll) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Sorted returns the nodes in Walk order.
func (t *Tree) Sorted() []*Node {
	out := make([]*Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return lessPath(out[i].Path, out[j].Path) })
	return out
}

// lessPath orders paths component by component, so a directory's subtree follows it directly.
func lessPath(a, b string) bool {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if ac != bc {
			return ac < bc
		}
		if ai < 0 || bi < 0 {
			return ai < 0 && bi >= 0
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// AddDir adds a directory (parents as needed). An existing directory takes the new mode, owner and
// origin; an existing non-directory is an error.
func (t *Tree) AddDir(p string, perm fs.FileMode, origin string) error {
	return t.add(&Node{Path: p, Mode: fs.ModeDir | perm.Perm() | perm&(fs.ModeSetgid|fs.ModeSticky), Origin: origin}, p)
}

// AddFile adds a regular file with the given contents and permission bits (setuid, setgid and
// sticky bits kept), creating parent directories (0755) as needed.
func (t *Tree) AddFile(p string, data []byte, perm fs.FileMode, origin string) error {
	return t.add(&Node{Path: p, Mode: perm.Perm() | perm&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), Data: data, Origin: origin}, p)
}

// AddSymlink adds a symbolic link. Absolute targets are kept as they are (they are interpreted
// inside the image); a relative target that climbs above the root is refused.
func (t *Tree) AddSymlink(p, target, origin string) error {
	return t.add(&Node{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target, Origin: origin}, p)
}

// AddDevice adds a device node: mode holds fs.ModeDevice (block) or fs.ModeDevice|fs.ModeCharDevice
// (character) with the permissions; fs.ModeNamedPipe adds a FIFO.
func (t *Tree) AddDevice(p string, mode fs.FileMode, major, minor uint32, origin string) error {
	if mode&(fs.ModeDevice|fs.ModeNamedPipe) == 0 {
		return &EntryError{Path: p, Origin: origin, Err: ErrType, Reason: "AddDevice needs a device or FIFO mode"}
	}
	return t.add(&Node{Path: p, Mode: mode, Major: major, Minor: minor, Origin: origin}, p)
}

// add checks and inserts n; name is the path as the source gave it, for messages.
func (t *Tree) add(n *Node, name string) error {
	c, err := CleanPath(n.Path)
	if err != nil {
		return &EntryError{Path: name, Origin: n.Origin, Err: ErrUnsafe, Reason: err.Error()}
	}
	if c == "" && !n.IsDir() {
		return &EntryError{Path: name, Origin: n.Origin, Err: ErrType, Reason: "the root must be a directory"}
	}
	n.Path = c
	if n.IsSymlink() {
		if err := checkTarget(c, n.Target); err != nil {
			return &EntryError{Path: name, Origin: n.Origin, Err: ErrUnsafe, Reason: err.Error()}
		}
	}
	if err := t.parents(c, n.Origin); err != nil {
		return err
	}
	old, exists := t.nodes[c]
	var oldSize int64
	if exists {
		oldSize = int64(len(old.Data))
	}
	if err := t.room(name, n.Origin, int64(len(n.Data)), oldSize); err != nil {
		return err
	}
	if l := t.Limits.Entries; l > 0 && !exists && len(t.nodes) >= l {
		return &EntryError{Path: name, Origin: n.Origin, Err: ErrTooLarge,
			Reason: fmt.Sprintf("more than %d entries; leave some out of the image", l)}
	}
	switch {
	case !exists:
	case old.IsDir() && n.IsDir():
		old.Mode, old.UID, old.GID, old.Origin = n.Mode, n.UID, n.GID, n.Origin
		return nil
	case old.IsDir():
		if t.hasChildren(c) {
			return &EntryError{Path: name, Origin: n.Origin, Err: ErrExists,
				Reason: fmt.Sprintf("cannot replace directory %s (from %s), which has entries, with a %s", c, old.Origin, kind(n))}
		}
		if !t.Replace {
			return &EntryError{Path: name, Origin: n.Origin, Err: ErrExists,
				Reason: fmt.Sprintf("%s is already a directory (from %s)", c, old.Origin)}
		}
	case !t.Replace:
		return &EntryError{Path: name, Origin: n.Origin, Err: ErrExists,
			Reason: fmt.Sprintf("%s is already a %s from %s; remove one of them, or add the later one as an overlay", c, kind(old), old.Origin)}
	}
	if exists {
		t.size -= int64(len(old.Data))
	}
	t.nodes[c] = n
	t.size += int64(len(n.Data))
	return nil
}

func (t *Tree) hasChildren(dir string) bool {
	for k := range t.nodes {
		if strings.HasPrefix(k, dir+"/") {
			return true
		}
	}
	return false
}

// parents creates the missing parent directories of p and checks that the existing ones are
// directories (a path through a symlink is refused: it could lead anywhere).
func (t *Tree) parents(p, origin string) error {
	if p == "" {
		return nil
	}
	dir := path.Dir(p)
	if dir == "." {
		return nil
	}
	var missing []string
	for d := dir; d != "."; d = path.Dir(d) {
		n, ok := t.nodes[d]
		if !ok {
			missing = append(missing, d)
			continue
		}
		if !n.IsDir() {
			hint := ""
			if n.IsSymlink() {
				hint = fmt.Sprintf(" (a symlink to %s); add the entry under the link's target instead", n.Target)
			}
			return &EntryError{Path: p, Origin: origin, Err: ErrExists,
				Reason: fmt.Sprintf("parent %s is a %s from %s%s", d, kind(n), n.Origin, hint)}
		}
		break
	}
	if l := t.Limits.Entries; l > 0 && len(t.nodes)+len(missing) >= l {
		return &EntryError{Path: p, Origin: origin, Err: ErrTooLarge,
			Reason: fmt.Sprintf("more than %d entries; leave some out of the image", l)}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		t.nodes[missing[i]] = &Node{Path: missing[i], Mode: fs.ModeDir | 0o755, Origin: origin}
	}
	return nil
}

// checkTarget refuses a relative symlink target that resolves above the root.
func checkTarget(link, target string) error {
	if target == "" {
		return errors.New("symlink has an empty target")
	}
	if strings.IndexByte(target, 0) >= 0 {
		return errors.New("symlink target contains a NUL byte")
	}
	if strings.HasPrefix(target, "/") {
		return nil
	}
	depth := strings.Count(link, "/") // directories above the link
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return fmt.Errorf("symlink target %q climbs above the image root; use an absolute target such as %q", target, path.Clean("/"+path.Join(path.Dir(link), target)))
			}
		default:
			depth++
		}
	}
	return nil
}

func kind(n *Node) string {
	switch {
	case n.IsDir():
		return "directory"
	case n.IsSymlink():
		return "symlink"
	case n.Mode&fs.ModeDevice != 0:
		return "device"
	case n.Mode&fs.ModeNamedPipe != 0:
		return "FIFO"
	}
	return "file"
}
