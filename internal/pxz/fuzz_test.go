package pxz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/ulikunitz/xz"
)

// FuzzReadIndex feeds arbitrary bytes to the index parser and, when it accepts them, to the
// decoder: neither panics, the blocks it lists lie inside the file in order, and decoding ends in
// the data or an error, never more data than the index announced.
func FuzzReadIndex(f *testing.F) {
	for _, cfg := range []xz.WriterConfig{{}, {BlockSize: 1 << 10}, {CheckSum: xz.SHA256}} {
		var b bytes.Buffer
		w, err := cfg.NewWriter(&b)
		if err != nil {
			f.Fatal(err)
		}
		w.Write(sample(3000))
		w.Close()
		f.Add(b.Bytes())
		f.Add(append(b.Bytes(), 0, 0, 0, 0))                     // stream padding
		f.Add(append(b.Bytes()[:b.Len():b.Len()], b.Bytes()...)) // two streams
	}
	f.Add([]byte{})
	f.Add([]byte("\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4\x46\x00\x00\x00\x00\x1c\xdf\x44\x21\x1f\xb6\xf3\x7d\x01\x00\x00\x00\x00\x04YZ"))
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(len(data))
		idx, err := ReadIndex(bytes.NewReader(data), size)
		if err != nil {
			if idx != nil {
				t.Fatalf("error %v with an index", err)
			}
			return
		}
		end := int64(12)
		var total int64
		for _, b := range idx.Blocks {
			if b.Offset < end || b.UnpaddedSize < 0 || b.Offset+b.UnpaddedSize > size || b.UncompressedSize < 0 {
				t.Fatalf("block %+v outside a %d-byte file or before byte %d", b, size, end)
			}
			end = b.Offset + b.UnpaddedSize
			total += b.UncompressedSize
		}
		if total != idx.UncompressedSize() || total < 0 {
			t.Fatalf("uncompressed size %d, blocks sum to %d", idx.UncompressedSize(), total)
		}
		r := NewReader(bytes.NewReader(data), idx, 2)
		defer r.Close()
		const limit = 8 << 20 // a small file can claim a huge size; read enough to exercise the decoder
		n, err := io.Copy(io.Discard, io.LimitReader(r, limit))
		if err == nil && n < limit && n != total {
			t.Fatalf("decoded %d bytes without an error, the index says %d", n, total)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("decode error without a sentinel: %v", err)
		}
	})
}
