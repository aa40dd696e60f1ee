package cpio

import (
	"fmt"
	"io"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// WriteTree writes every node of t (in Walk order: parents first, siblings by name) and the
// trailer to w, stamped with mtime. The root node is skipped: the kernel's rootfs exists already.
// It returns the number of bytes written.
func WriteTree(w io.Writer, t *fstree.Tree, mtime int64) (int64, error) {
	var entries []Entry
	err := t.Walk(func(n *fstree.Node) error {
		if n.Path == "" || n.Path == "." {
			return nil
		}
		if n.UID < 0 || n.GID < 0 {
			return fmt.Errorf("cpio: %s: negative owner %d:%d", n.Path, n.UID, n.GID)
		}
		entries = append(entries, Entry{Name: n.Path, Mode: n.Mode, UID: uint32(n.UID), GID: uint32(n.GID),
			Data: n.Data, Linkname: n.Target, Major: n.Major, Minor: n.Minor})
		return nil
	})
	if err != nil {
		return 0, err
	}
	return WriteAll(w, entries, mtime)
}
