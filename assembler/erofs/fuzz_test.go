package erofs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// FuzzWrite: any file list (names, types and sizes from the input) is either refused with
// ErrInvalid or written as a whole number of blocks, the same bytes twice.
func FuzzWrite(f *testing.F) {
	f.Add([]byte("etc/hostname\x00f\x00kiln\nbin\x00l\x00usr/bin\nusr/bin\x00d\x00"))
	f.Add([]byte("a\x00f\x00" + strings.Repeat("x", 5000) + "\na/b\x00f\x00y"))
	f.Add([]byte("../x\x00f\x00\n\x00d\x00\ndev/null\x00c\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var files []File
		for _, line := range bytes.Split(in, []byte("\n")) {
			parts := bytes.SplitN(line, []byte{0}, 3)
			if len(parts) < 3 || len(files) > 200 {
				continue
			}
			fl := File{Path: string(parts[0])}
			switch string(parts[1]) {
			case "d":
				fl.Mode = fs.ModeDir | 0o755
			case "l":
				fl.Mode, fl.Target = fs.ModeSymlink|0o777, string(parts[2])
			case "c":
				fl.Mode, fl.Major, fl.Minor = fs.ModeDevice|fs.ModeCharDevice|0o600, uint32(len(parts[2])), 3
			default:
				fl.Mode, fl.Data = 0o644, parts[2]
			}
			files = append(files, fl)
		}
		var a, b bytes.Buffer
		res, err := Write(context.Background(), &a, files, 1)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if res.Size%BlockSize != 0 || res.Size != int64(a.Len()) {
			t.Fatalf("size %d, wrote %d", res.Size, a.Len())
		}
		if _, err := Write(context.Background(), &b, files, 1); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("second write differs (%v)", err)
		}
	})
}
