package vmrunner

import (
	"bytes"
	"image/color"
	"testing"
)

func TestDecodePPM(t *testing.T) {
	data := []byte("P6\n# QEMU screendump\n3 2\n255\n")
	pixels := []byte{255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 0, 0, 0, 255, 255, 255}
	img, err := DecodePPM(bytes.NewReader(append(data, pixels...)))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 3 || b.Dy() != 2 {
		t.Fatalf("size %v, want 3x2", b)
	}
	want := map[[2]int]color.RGBA{{0, 0}: {255, 0, 0, 255}, {2, 0}: {0, 0, 255, 255}, {0, 1}: {10, 20, 30, 255}, {2, 1}: {255, 255, 255, 255}}
	for p, c := range want {
		if got := color.RGBAModel.Convert(img.At(p[0], p[1])).(color.RGBA); got != c {
			t.Errorf("pixel %v = %v, want %v", p, got, c)
		}
	}
	for _, bad := range []string{"P5\n1 1\n255\n\x00", "P6\n2 2\n255\n\x00\x00", "P6\n0 1\n255\n", "P6\n1 1\n65535\n\x00\x00\x00"} {
		if _, err := DecodePPM(bytes.NewReader([]byte(bad))); err == nil {
			t.Errorf("DecodePPM(%q) succeeded, want an error", bad)
		}
	}
}
