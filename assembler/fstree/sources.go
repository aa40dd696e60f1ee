package fstree

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
)

// AddDeb adds the entries of a package's data tarball. filter (nil: all) selects entries by their
// path in the package ("bin/busybox"); mapPath (nil: identity) gives the path in the tree, "" to
// skip. Hard links become copies of their target. Origins read "name version /path".
func (t *Tree) AddDeb(pkg *deb.Package, filter func(p string) bool, mapPath func(p string) string) error {
	origin := func(name string) string { return pkg.Name + " " + pkg.Version + " /" + name }
	dest := map[string]string{} // package path → tree path, for hard links
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if filter != nil && !filter(h.Name) {
			return nil
		}
		to := h.Name
		if mapPath != nil {
			if to = mapPath(h.Name); to == "" {
				return nil
			}
		}
		dest[h.Name] = to
		return t.addTar(h, r, to, origin(h.Name), func(link string) (string, bool) {
			d, ok := dest[link]
			return d, ok
		})
	})
	if err != nil {
		return fmt.Errorf("add package %s %s: %w", pkg.Name, pkg.Version, err)
	}
	return nil
}

// AddTarball adds the entries of a tarball (.tar, .tar.gz/.tgz, .tar.xz/.txz, .tar.zst/.tzst,
// .tar.bz2; the compression is recognised by content) under dest. Absolute entry names, ".."
// components, escaping symlinks and (unless AllowDevices) device nodes are refused. Owners and
// modes come from the tarball. Origins read origin + "/" + entry name.
func (t *Tree) AddTarball(file, dest, origin string) error {
	// Stat before opening: opening a FIFO blocks until something writes to it.
	if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("add tarball %s: it is %s, not a regular file: %w", file, Describe(fi.Mode()), ErrType)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("add tarball %s: %w", file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("add tarball %s: %w", file, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("add tarball %s: it is %s, not a regular file: %w", file, Describe(fi.Mode()), ErrType)
	}
	r, err := deb.Decompress(io.NewSectionReader(f, 0, fi.Size()), filepath.Base(file))
	if err != nil {
		return fmt.Errorf("add tarball %s: %w", file, err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	dest = strings.Trim(dest, "/")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("add tarball %s: %w", file, err)
		}
		name := h.Name
		o := origin + "/" + strings.TrimPrefix(name, "./")
		if strings.HasPrefix(name, "/") {
			return fmt.Errorf("add tarball %s: %w", file, &EntryError{Path: name, Origin: o, Err: ErrUnsafe,
				Reason: "absolute name in the tarball; make it with relative names (tar -C dir .)"})
		}
		rel, err := CleanPath(name)
		if err != nil {
			return fmt.Errorf("add tarball %s: %w", file, &EntryError{Path: name, Origin: o, Err: ErrUnsafe, Reason: err.Error()})
		}
		if h.Typeflag == tar.TypeLink {
			if strings.HasPrefix(h.Linkname, "/") {
				return fmt.Errorf("add tarball %s: %w", file, &EntryError{Path: name, Origin: o, Err: ErrUnsafe,
					Reason: fmt.Sprintf("hard link to absolute path %q", h.Linkname)})
			}
			l, err := CleanPath(h.Linkname)
			if err != nil {
				return fmt.Errorf("add tarball %s: %w", file, &EntryError{Path: name, Origin: o, Err: ErrUnsafe, Reason: "hard link target: " + err.Error()})
			}
			h.Linkname = l
		}
		err = t.addTar(h, tr, path.Join(dest, rel), o, func(link string) (string, bool) { return path.Join(dest, link), true })
		if err != nil {
			return fmt.Errorf("add tarball %s: %w", file, err)
		}
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("add tarball %s: %w", file, err)
	}
	return nil
}

// addTar adds one tar entry at path to; link maps a hard link's target to its tree path.
func (t *Tree) addTar(h *tar.Header, r io.Reader, to, origin string, link func(string) (string, bool)) error {
	perm := fs.FileMode(h.Mode).Perm()
	if h.Mode&0o4000 != 0 {
		perm |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		perm |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		perm |= fs.ModeSticky
	}
	n := &Node{Path: to, UID: h.Uid, GID: h.Gid, Origin: origin}
	switch h.Typeflag {
	case tar.TypeDir:
		n.Mode = fs.ModeDir | perm
	case tar.TypeReg, tar.TypeRegA:
		if h.Size < 0 {
			return &EntryError{Path: h.Name, Origin: origin, Err: ErrType, Reason: fmt.Sprintf("negative size %d", h.Size)}
		}
		if err := t.fileRoom(to, h.Name, origin, h.Size); err != nil {
			return err
		}
		data, err := readAtMost(r, h.Size)
		if err != nil {
			return err
		}
		n.Mode, n.Data = perm, data
	case tar.TypeSymlink:
		n.Mode, n.Target = fs.ModeSymlink|0o777, h.Linkname
	case tar.TypeLink:
		dst, ok := link(h.Linkname)
		var target *Node
		if ok {
			target = t.Get(dst)
		}
		if target == nil || !target.IsRegular() {
			return &EntryError{Path: h.Name, Origin: origin, Err: ErrUnsafe,
				Reason: fmt.Sprintf("hard link to %q, which is not a file added before it", h.Linkname)}
		}
		n.Mode, n.Data, n.UID, n.GID = target.Mode, target.Data, target.UID, target.GID
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if !t.AllowDevices && h.Typeflag != tar.TypeFifo {
			return &EntryError{Path: h.Name, Origin: origin, Err: ErrDevice,
				Reason: "set allow_devices = true in [system] if the image really needs it (the init creates /dev itself)"}
		}
		n.Mode, n.Major, n.Minor = perm|fs.ModeNamedPipe, uint32(h.Devmajor), uint32(h.Devminor)
		if h.Typeflag == tar.TypeChar {
			n.Mode = perm | fs.ModeDevice | fs.ModeCharDevice
		} else if h.Typeflag == tar.TypeBlock {
			n.Mode = perm | fs.ModeDevice
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return &EntryError{Path: h.Name, Origin: origin, Err: ErrType, Reason: fmt.Sprintf("tar entry type %q", h.Typeflag)}
	}
	return t.add(n, h.Name)
}

// AddOverlayDir copies the directory tree dir into the tree under dest. Files are owned by root
// (0:0) whatever their owner on the build machine; modes are kept. Symlinks are copied as links
// (and checked); device nodes need AllowDevices; sockets are refused. Origins read
// origin + "/" + the path relative to dir.
func (t *Tree) AddOverlayDir(dir, dest, origin string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("add overlay %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("add overlay %s: not a directory", dir)
	}
	dest = strings.Trim(dest, "/")
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		to := path.Join(dest, rel)
		o := origin + "/" + rel
		if rel == "." {
			if dest == "" {
				return nil // the root keeps its own mode
			}
			o = origin
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		perm := mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		switch {
		case mode.IsDir():
			return t.AddDir(to, perm, o)
		case mode.IsRegular():
			if err := t.fileRoom(to, rel, o, info.Size()); err != nil {
				return err
			}
			limit := t.Limits.File
			if limit == 0 {
				limit = math.MaxInt64
			}
			data, err := ReadFile(p, limit)
			if err != nil {
				return err
			}
			return t.AddFile(to, data, perm, o)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return t.AddSymlink(to, filepath.ToSlash(target), o)
		case mode&fs.ModeNamedPipe != 0:
			return t.AddDevice(to, fs.ModeNamedPipe|perm, 0, 0, o)
		case mode&fs.ModeDevice != 0:
			if !t.AllowDevices {
				return &EntryError{Path: rel, Origin: o, Err: ErrDevice,
					Reason: "set allow_devices = true in [system] if the image really needs it (the init creates /dev itself)"}
			}
			major, minor, err := DeviceNumbers(info)
			if err != nil {
				return &EntryError{Path: rel, Origin: o, Err: ErrType, Reason: err.Error()}
			}
			return t.AddDevice(to, mode&(fs.ModeDevice|fs.ModeCharDevice)|perm, major, minor, o)
		}
		what := "a special file"
		if mode&fs.ModeSocket != 0 {
			what = "a socket"
		}
		return &EntryError{Path: rel, Origin: o, Err: ErrType, Reason: what + " cannot go into an image; remove it from the overlay"}
	})
	if err != nil {
		return fmt.Errorf("add overlay %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads the regular file p, refusing anything else (a device such as /dev/zero, a FIFO,
// a directory) and a file larger than max bytes, even one growing while it is read.
func ReadFile(p string, max int64) ([]byte, error) {
	// Stat before opening: opening a FIFO blocks until something writes to it.
	if fi, err := os.Stat(p); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file: %w", p, Describe(fi.Mode()), ErrType)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file: %w", p, Describe(fi.Mode()), ErrType)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s holds %d bytes, more than the %d allowed here: %w", p, fi.Size(), max, ErrTooLarge)
	}
	data, err := readAtMost(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return nil, fmt.Errorf("%s grew while it was read: %w", p, ErrTooLarge)
	}
	return data, nil
}

// readAtMost reads exactly size bytes of r. Large sizes are not allocated up front, so a header
// claiming more than the stream holds costs only what it holds.
func readAtMost(r io.Reader, size int64) ([]byte, error) {
	if size > 1<<20 {
		data, err := io.ReadAll(io.LimitReader(r, size))
		if err == nil && int64(len(data)) < size {
			err = io.ErrUnexpectedEOF
		}
		return data, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return data, nil
}

// Describe names a file type for messages: "a character device", "a directory", ...
func Describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}
