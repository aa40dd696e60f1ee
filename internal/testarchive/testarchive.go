// Package testarchive makes hostile archives for tests of the readers that must refuse them.
package testarchive

import (
	"archive/tar"
	"bytes"
	"os"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// TarGzBomb writes to path a .tar.gz whose only entry, name, is a file of size zero bytes (a
// multiple of 1 MiB). It is a series of gzip members, which readers join: the tar header, the
// same compressed MiB of zeros again and again, the tar trailer. So a 1.5 GiB file takes about
// 1.5 MB and no time to make.
func TarGzBomb(t testing.TB, path, name string, size int64) {
	t.Helper()
	member := func(data []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var hdr bytes.Buffer
	if err := tar.NewWriter(&hdr).WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	zeros := member(make([]byte, 1<<20))
	out := member(hdr.Bytes())
	for n := int64(0); n < size; n += 1 << 20 {
		out = append(out, zeros...)
	}
	out = append(out, member(make([]byte, 1024))...) // end of archive
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
