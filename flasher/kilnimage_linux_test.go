package flasher

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/testimage"
)

// TestFlashKilnImage flashes a real Kiln image with the block map the assembler wrote, and checks
// the drive with sgdisk and the mapped bytes with the image's own sha256 sums.
func TestFlashKilnImage(t *testing.T) {
	needRoot(t, "cmp", "sgdisk")
	res := testimage.Build(t, "")
	m, err := bmap.Load(res.Bmap)
	if err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, res.ImageSize+8<<20)
	_, w0 := stat(t, dev)
	out, err := Flash(context.Background(), res.Image, []string{dev}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, w1 := stat(t, dev)
	if !out[0].Verified || out[0].Written != m.MappedBytes() {
		t.Fatalf("%+v (mapped %d)", out[0], m.MappedBytes())
	}
	if written := (w1 - w0) * 512; written > m.MappedBytes()+1<<20 {
		t.Fatalf("wrote %d bytes for %d mapped", written, m.MappedBytes())
	}
	cmpDevice(t, dev, res.Image) // the loop device started zeroed: the holes match too
	// The backup GPT sits at the image's end, not the larger drive's: sgdisk must still read it.
	if out, err := exec.Command("sgdisk", "-p", dev).CombinedOutput(); err != nil || !strings.Contains(string(out), "EF00") {
		t.Fatalf("sgdisk -p %s: %v\n%s", dev, err, out)
	}
}
