// Package delta makes and applies binary deltas between two versions of a payload, in the style
// of `zstd --patch-from`: the new payload is zstd-compressed with the old one as a raw
// dictionary, so unchanged regions become back-references into the old payload.
package delta

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// MaxBase is the largest base payload a delta can be made against: the base is held in memory
// as the dictionary on both sides, and it must fit in the zstd window.
const MaxBase = 256 << 20

// ErrBaseTooLarge: the base payload exceeds MaxBase; ship the full payload instead.
var ErrBaseTooLarge = errors.New("delta base too large")

// dictID tags patches; any non-zero value works since both sides agree on the base.
const dictID = 0x4b494c4e // "KILN"

func window(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// Create writes to w a patch that turns base into the content read from newer. base is the
// complete old payload; newer is streamed.
func Create(ctx context.Context, w io.Writer, base []byte, newer io.Reader, newSize int64) error {
	if len(base) > MaxBase {
		return fmt.Errorf("create delta: %w (%d bytes > %d)", ErrBaseTooLarge, len(base), MaxBase)
	}
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderDictRaw(dictID, base),
		zstd.WithWindowSize(window(len(base)+int(min(newSize, MaxBase)))),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return fmt.Errorf("create delta: %w", err)
	}
	if _, err := io.Copy(enc, ctxReader{ctx, newer}); err != nil {
		enc.Close()
		return fmt.Errorf("create delta: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("create delta: %w", err)
	}
	return nil
}

// Apply writes to w the payload that patch produces from base. At most limit bytes are
// produced; a patch producing more fails.
func Apply(ctx context.Context, w io.Writer, base []byte, patch io.Reader, limit int64) (int64, error) {
	if len(base) > MaxBase {
		return 0, fmt.Errorf("apply delta: %w", ErrBaseTooLarge)
	}
	dec, err := zstd.NewReader(patch,
		zstd.WithDecoderDictRaw(dictID, base),
		zstd.WithDecoderMaxWindow(uint64(window(len(base)+int(min(limit, MaxBase))))),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return 0, fmt.Errorf("apply delta: %w", err)
	}
	defer dec.Close()
	n, err := io.Copy(w, io.LimitReader(ctxReader{ctx, dec}, limit+1))
	if err != nil {
		return n, fmt.Errorf("apply delta: %w", err)
	}
	if n > limit {
		return n, fmt.Errorf("apply delta: output longer than the %d bytes expected", limit)
	}
	return n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
