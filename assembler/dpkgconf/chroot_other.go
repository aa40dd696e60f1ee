//go:build !linux

package dpkgconf

import (
	"context"
	"fmt"
	"io/fs"
	"runtime"
	"time"

	"github.com/kilnproject/kiln/assembler/fstree"
)

func chroot(ctx context.Context, root, shell, script string, env []string) ([]byte, error) {
	return nil, fmt.Errorf("%w: running the packages' maintainer scripts needs a Linux build host (this is %s)", ErrUnsupported, runtime.GOOS)
}

func own(p string, n *fstree.Node, mtime time.Time) error { return nil }

func owner(fs.FileInfo) (int, int) { return 0, 0 }
