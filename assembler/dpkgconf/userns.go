package dpkgconf

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// ChildCommand is the hidden first argument with which kiln runs itself inside the user namespace
// (the kiln command and test binaries hand it to ChildMain).
const ChildCommand = "__kiln-dpkgconf-userns"

// request is what the parent sends the child on its standard input (JSON).
type request struct {
	Root   string     // the tree, written by the parent
	Shell  string     // in the tree
	Script string     // run with Shell -c in a chroot of Root
	Env    []string   // the script's environment
	Epoch  int64      // SOURCE_DATE_EPOCH: every entry's time
	Owns   []ownEntry // owners and modes to set before the script runs, in order
	Remove bool       // only remove Root (after a cancelled run)
}

// ownEntry is the owner and mode of one path of the tree, relative to Root.
type ownEntry struct {
	Path     string
	UID, GID int
	Mode     uint32 // fs.FileMode
}

// readTar builds the configured tree from the child's tar stream, with origins from old.
func readTar(old *fstree.Tree, r io.Reader) (*fstree.Tree, error) {
	t := newTree(old)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the configured tree: %w", err)
		}
		e := entry{rel: h.Name, mode: fs.FileMode(h.Mode).Perm(), uid: h.Uid, gid: h.Gid}
		if h.Mode&0o4000 != 0 {
			e.mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			e.mode |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			e.mode |= fs.ModeSticky
		}
		if h.Name == "." {
			e.rel = ""
		}
		switch h.Typeflag {
		case tar.TypeDir:
			e.mode |= fs.ModeDir
		case tar.TypeSymlink:
			e.mode |= fs.ModeSymlink
			e.target = h.Linkname
		case tar.TypeReg:
			if l := old.Limits.File; h.Size < 0 || l > 0 && h.Size > l {
				return nil, fmt.Errorf("read the configured tree: %s: %d bytes is more than a file may hold here", h.Name, h.Size)
			}
			if l := old.Limits.Total; l > 0 && t.Size()+h.Size > l {
				return nil, fmt.Errorf("read the configured tree: %s: the files exceed the %d bytes the image has room for", h.Name, l)
			}
			e.data = make([]byte, h.Size)
			if _, err := io.ReadFull(tr, e.data); err != nil {
				return nil, fmt.Errorf("read the configured tree: %s: %w", h.Name, err)
			}
		default:
			return nil, fmt.Errorf("read the configured tree: %s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
		if err := addEntry(t, old, e); err != nil {
			return nil, fmt.Errorf("read the configured tree: %w", err)
		}
	}
}

// writeTarEntry writes one entry of the tree (its file's contents from open) to tw.
func writeTarEntry(tw *tar.Writer, rel string, fi fs.FileInfo, uid, gid int, target string, open func() (io.ReadCloser, error)) error {
	name := rel
	if name == "" {
		name = "."
	}
	m := fi.Mode()
	h := &tar.Header{Name: name, Mode: int64(m.Perm()), Uid: uid, Gid: gid, Format: tar.FormatPAX}
	if m&fs.ModeSetuid != 0 {
		h.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		h.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	switch {
	case m.IsDir():
		h.Typeflag = tar.TypeDir
	case m&fs.ModeSymlink != 0:
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	default:
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := open()
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s changed while it was read", rel)
	}
	return err
}
