package pxz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// sample is compressible data of n bytes.
func sample(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"kiln ", "image ", "block ", "stream ", "\x00\x00\x00\x00", "boot "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(50) == 0 {
			b.WriteByte(byte(rng.Uint32()))
		}
	}
	return b.Bytes()[:n]
}

func compress(t *testing.T, data []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := cfg.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decode(file []byte, workers int) ([]byte, *Index, error) {
	idx, err := ReadIndex(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return nil, nil, err
	}
	r := NewReader(bytes.NewReader(file), idx, workers)
	defer r.Close()
	out, err := io.ReadAll(r)
	return out, idx, err
}

func TestDecodesBlocksStreamsAndChecks(t *testing.T) {
	data := sample(5<<20 + 123)
	multi := compress(t, data, xz.WriterConfig{BlockSize: 1 << 20})
	// Two streams with stream padding between them, as `cat a.xz b.xz` and some tools write.
	half := len(data) / 2
	concat := append(compress(t, data[:half], xz.WriterConfig{BlockSize: 512 << 10, CheckSum: xz.SHA256}), 0, 0, 0, 0)
	concat = append(concat, compress(t, data[half:], xz.WriterConfig{CheckSum: xz.CRC32})...)
	cases := []struct {
		name   string
		file   []byte
		blocks int
	}{
		{"one block, crc64", compress(t, data, xz.WriterConfig{}), 1},
		{"six blocks", multi, 6},
		{"no check", compress(t, data, xz.WriterConfig{BlockSize: 2 << 20, NoCheckSum: true}), 3},
		{"two streams with padding, sha256 and crc32", concat, 7},
		{"empty", compress(t, nil, xz.WriterConfig{}), 1},
	}
	// The reference encoder, multi-threaded, also with a BCJ filter before LZMA2.
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatal("xz is not installed (make test installs it)")
	}
	for _, args := range [][]string{{"-T2"}, {"-T2", "--x86", "--lzma2=preset=6"}} {
		cmd := exec.Command("xz", append(args, "--block-size=1MiB", "-c")...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz %v: %v", args, err)
		}
		cases = append(cases, struct {
			name   string
			file   []byte
			blocks int
		}{fmt.Sprint("xz ", args), out, 6})
	}
	for _, c := range cases {
		for _, workers := range []int{1, 4} {
			got, idx, err := decode(c.file, workers)
			if err != nil {
				t.Fatalf("%s, %d workers: %v", c.name, workers, err)
			}
			want := data
			if c.name == "empty" {
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, %d workers: decoded %d bytes that differ from the %d compressed", c.name, workers, len(got), len(want))
			}
			if len(idx.Blocks) != c.blocks || idx.UncompressedSize() != int64(len(want)) {
				t.Fatalf("%s: index has %d blocks, %d bytes; want %d blocks, %d bytes", c.name, len(idx.Blocks), idx.UncompressedSize(), c.blocks, len(want))
			}
		}
	}
}

func TestDamageIsAnError(t *testing.T) {
	data := sample(3 << 20)
	file := compress(t, data, xz.WriterConfig{BlockSize: 1 << 20})
	idx, err := ReadIndex(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIndex(bytes.NewReader(file[:len(file)-7]), int64(len(file)-7)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("cut-off file: got %v, want ErrCorrupt", err)
	}
	if _, err := ReadIndex(bytes.NewReader([]byte("not xz at all, but long enough")), 30); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("not xz: got %v, want ErrCorrupt", err)
	}
	// A flipped byte in the compressed data of the second block, in the middle of its data.
	b := idx.Blocks[1]
	flipped := bytes.Clone(file)
	flipped[b.Offset+b.UnpaddedSize/2] ^= 0x40
	if _, _, err := decode(flipped, 2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped byte: got %v, want ErrCorrupt", err)
	}
	// A flipped byte in a block header.
	flipped = bytes.Clone(file)
	flipped[idx.Blocks[2].Offset+2] ^= 0x01
	if _, _, err := decode(flipped, 2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped header byte: got %v, want ErrCorrupt", err)
	}
	// The file shrinks after the index was read.
	short := file[:idx.Blocks[2].Offset+10]
	r := NewReader(bytes.NewReader(short), idx, 2)
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("file cut after indexing: got %v, want ErrTruncated", err)
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	file := compress(t, sample(8<<20), xz.WriterConfig{BlockSize: 1 << 20})
	before := runtime.NumGoroutine()
	idx, err := ReadIndex(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(file), idx, 4)
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left running after Close (was %d)", n, before)
	}
}
