package disk

import (
	"fmt"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/fstree"
)

// FromTree lists a file tree as a FAT partition's Files, in the tree's order. FAT holds only regular
// files and directories: any other node (symbolic link, device, FIFO, socket) is an ErrUnsupported
// error naming the node and where it came from.
func FromTree(t *fstree.Tree) ([]fat.File, error) {
	var out []fat.File
	err := t.Walk(func(n *fstree.Node) error {
		switch {
		case n.Path == "":
			// the root directory
		case n.IsDir():
			out = append(out, fat.File{Path: n.Path, Dir: true})
		case n.IsRegular():
			out = append(out, fat.File{Path: n.Path, Data: n.Data})
		default:
			from := ""
			if n.Origin != "" {
				from = " (from " + n.Origin + ")"
			}
			return fmt.Errorf("%s%s: %w: FAT32 cannot store %s; put a regular file there or move it to the initramfs",
				n.Path, from, ErrUnsupported, fstree.Describe(n.Mode))
		}
		return nil
	})
	return out, err
}
