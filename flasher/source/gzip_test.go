package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// decodeGo probes and decodes file contents with the built-in decoders.
func decodeGo(t *testing.T, contents []byte) ([]byte, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(p, contents, 0o644); err != nil {
		t.Fatal(err)
	}
	im, err := Probe(p)
	if err != nil {
		return nil, err
	}
	im.Decoder = "go"
	r, err := im.Open(context.Background())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestGzipMembersAndMissingTrailer(t *testing.T) {
	a := bytes.Repeat([]byte("first member "), 300000)
	b := bytes.Repeat([]byte("second "), 200000)
	ga, gb := gzipped(t, a), gzipped(t, b)
	got, err := decodeGo(t, append(append([]byte{}, ga...), gb...))
	if err != nil || !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
		t.Fatalf("two members: %d bytes, %v", len(got), err)
	}
	for name, cut := range map[string][]byte{
		"no trailer":     ga[:len(ga)-8],
		"half a trailer": ga[:len(ga)-4],
	} {
		if _, err := decodeGo(t, cut); !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: want ErrTruncated, got %v", name, err)
		}
	}
	bad := append([]byte{}, ga...)
	bad[len(bad)-5] ^= 1 // the CRC
	for name, c := range map[string][]byte{"bad checksum": bad, "a member without its trailer": append(append([]byte{}, ga[:len(ga)-8]...), gb...)} {
		if _, err := decodeGo(t, c); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: want ErrFormat, got %v", name, err)
		}
	}
}
