//go:build !linux

package dpkgconf

import (
	"context"
	"fmt"
	"os"

	"github.com/kilnproject/kiln/assembler/fstree"
)

func needUserns() bool { return false }

func runUserns(context.Context, request, *fstree.Tree) ([]byte, *fstree.Tree, error) {
	return nil, nil, ErrUnsupported
}

// ChildMain is the namespace child of Linux builds; elsewhere it only says so.
func ChildMain([]string) int {
	fmt.Fprintln(os.Stderr, "kiln: "+ChildCommand+" runs only on Linux")
	return 1
}

// Check reports whether this host can run maintainer scripts: only Linux can.
func Check() error {
	_, err := chroot(context.Background(), "", "", "", nil)
	return err
}
