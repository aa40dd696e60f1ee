package source

import (
	"context"
	"io"
	"os"
	"runtime"

	"github.com/kilnproject/kiln/internal/pxz"
)

// openXZ decodes through `xz -T0` when installed (liblzma is several times faster per core than any
// Go decoder), else on all CPUs with the built-in block-parallel decoder.
func (im *Image) openXZ(ctx context.Context, f *os.File) (io.ReadCloser, error) {
	if im.useProgram("xz") {
		return im.program(ctx, f, "xz", "--decompress", "--stdout", "--threads=0")
	}
	r := pxz.NewReader(f, im.XZ, runtime.GOMAXPROCS(0))
	return &readCloser{Reader: r, closers: []io.Closer{r, f}, path: im.Path}, nil
}
