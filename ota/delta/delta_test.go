package delta

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

func TestRoundTripOneRegionChanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := make([]byte, 12<<20)
	for i := range base {
		base[i] = byte(rng.UintN(256))
	}
	newer := bytes.Clone(base)
	copy(newer[5<<20:], []byte("a changed file in the initramfs"))
	newer = append(newer, bytes.Repeat([]byte("appended "), 1000)...)

	var patch bytes.Buffer
	if err := Create(context.Background(), &patch, base, bytes.NewReader(newer), int64(len(newer))); err != nil {
		t.Fatal(err)
	}
	if patch.Len() > len(newer)/50 {
		t.Errorf("patch is %d bytes for a %d-byte payload with one small change; want < 2%%", patch.Len(), len(newer))
	}
	var out bytes.Buffer
	n, err := Apply(context.Background(), &out, base, bytes.NewReader(patch.Bytes()), int64(len(newer)))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(newer)) || !bytes.Equal(out.Bytes(), newer) {
		t.Fatalf("applied patch gives %d bytes that differ from the new payload", n)
	}
	// A patch producing more than the signed size is refused.
	if _, err := Apply(context.Background(), &bytes.Buffer{}, base, bytes.NewReader(patch.Bytes()), int64(len(newer))-1); err == nil {
		t.Fatal("Apply with a too-small limit succeeded")
	}
	// The wrong base does not silently produce the payload.
	wrong := bytes.Clone(base)
	wrong[0] ^= 0xff
	out.Reset()
	if _, err := Apply(context.Background(), &out, wrong, bytes.NewReader(patch.Bytes()), int64(len(newer))); err == nil && bytes.Equal(out.Bytes(), newer) {
		t.Fatal("patch applied to the wrong base produced the new payload")
	}
}
