package source

import (
	"context"
	"io"
	"os"
	"testing"
)

func BenchmarkXZ(b *testing.B) {
	p := os.Getenv("XZ_FILE")
	if p == "" {
		b.Skip("XZ_FILE not set")
	}
	for _, dec := range []string{"go", "exec"} {
		b.Run(dec, func(b *testing.B) {
			for b.Loop() {
				im, err := Probe(p)
				if err != nil {
					b.Fatal(err)
				}
				im.Decoder = dec
				r, err := im.Open(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(n)
				r.Close()
			}
		})
	}
}
