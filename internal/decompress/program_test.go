package decompress

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

func randomData(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(16)) // compressible, not trivial
	}
	return b
}

// Every program the flasher and the package reader may run decodes a stream exactly.
func TestProgramsDecode(t *testing.T) {
	data := randomData(5 << 20)
	gz := gzipped(t, data)
	for _, prog := range []string{"igzip", "pigz", "gzip"} {
		testenv.Tool(t, prog)
		r, err := Program(context.Background(), bytes.NewReader(gz), prog, "-dc")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", prog, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("%s: close: %v", prog, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: decoded %d bytes, not the %d written", prog, len(got), len(data))
		}
	}
}

// Corrupt and cut-off input is an error from Read, never a clean end of file.
func TestProgramFailureIsAnError(t *testing.T) {
	testenv.Tool(t, "igzip")
	gz := gzipped(t, randomData(1<<20))
	cut := gz[:len(gz)/2]
	flipped := bytes.Clone(gz)
	flipped[len(flipped)/2] ^= 0x55
	for name, in := range map[string][]byte{"cut": cut, "flipped": flipped} {
		r, err := Program(context.Background(), bytes.NewReader(in), "igzip", "-dc")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		var pe *ProgramError
		if !errors.As(err, &pe) {
			t.Errorf("%s: read error %v, want a ProgramError", name, err)
			continue
		}
		if name == "cut" && !pe.Truncated() {
			t.Errorf("cut: %q not recognised as truncated", pe.Stderr)
		}
		r.Close()
	}
}

// Closing early stops a program that still has much to write, and cancelling kills it.
func TestProgramStopsEarly(t *testing.T) {
	testenv.Tool(t, "igzip")
	gz := gzipped(t, randomData(64<<20))
	r, err := Program(context.Background(), bytes.NewReader(gz), "igzip", "-dc")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(r, make([]byte, 1<<20))
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("early close reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the program")
	}

	ctx, cancel := context.WithCancel(context.Background())
	r, err = Program(ctx, bytes.NewReader(gz), "igzip", "-dc")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(r, make([]byte, 1<<20))
	cancel()
	if _, err := io.Copy(io.Discard, r); err == nil {
		t.Error("a cancelled program ended cleanly")
	}
	r.Close()
}
