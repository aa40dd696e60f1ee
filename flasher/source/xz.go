package source

import (
	"bufio"
	"context"
	"io"
	"runtime"

	"github.com/kilnproject/kiln/internal/pxz"
	"github.com/ulikunitz/xz"
)

// openXZ decodes through `xz -T0` when installed (liblzma is several times faster per core than any
// Go decoder), else with the built-in block-parallel decoder: on all CPUs for a local file, one
// block at a time for a URL (so the download stays one sequential stream), or the streaming
// decoder when the index at the end of a URL image was out of reach.
func (im *Image) openXZ(ctx context.Context, in io.Reader, ra io.ReaderAt, fc io.Closer) (io.ReadCloser, error) {
	if im.useProgram("xz") {
		return im.program(ctx, in, fc, "xz", "--decompress", "--stdout", "--threads=0")
	}
	if im.XZ == nil {
		zr, err := xz.NewReader(bufio.NewReaderSize(in, 1<<20))
		if err != nil {
			fc.Close()
			return nil, decodeError(im.Path, err)
		}
		return &readCloser{Reader: zr, closers: []io.Closer{fc}, path: im.Path}, nil
	}
	workers := runtime.GOMAXPROCS(0)
	if im.remote != nil {
		workers = 1
	}
	r := pxz.NewReader(ra, im.XZ, workers)
	return &readCloser{Reader: r, closers: []io.Closer{r, fc}, path: im.Path}, nil
}
