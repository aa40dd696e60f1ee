package bmap

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// sparseImage writes a 4 MiB sparse file with data at three places.
func sparseImage(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 20, 3<<20 + 8192} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestCreateMarshalParseRoundTrip(t *testing.T) {
	p := sparseImage(t)
	f, _ := os.Open(p)
	defer f.Close()
	m, err := Create(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if m.MappedBytes() < 3*4096 || m.MappedBytes() >= 4<<20 {
		t.Fatalf("mapped %d bytes: holes were not detected", m.MappedBytes())
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Ranges) != len(m.Ranges) || back.ImageSize != m.ImageSize || back.Ranges[0] != m.Ranges[0] {
		t.Fatalf("round trip changed the map: %+v vs %+v", back, m)
	}
	flipped := bytes.Replace(data, []byte("<ImageSize> 4194304"), []byte("<ImageSize> 4194305"), 1)
	if _, err := Parse(flipped); !errors.Is(err, ErrChecksum) {
		t.Fatalf("edited bmap: got %v, want ErrChecksum", err)
	}
}

// TestBmaptoolInterop checks both directions against the real bmaptool: its maps parse here, and
// bmaptool copy accepts ours and reproduces the image.
func TestBmaptoolInterop(t *testing.T) {
	if _, err := exec.LookPath("bmaptool"); err != nil {
		testenv.Missing(t, "bmaptool not installed (Debian package bmap-tools)")
	}
	p := sparseImage(t)
	theirs := p + ".theirs.bmap"
	if out, err := exec.Command("bmaptool", "create", "-o", theirs, p).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool create: %v\n%s", err, out)
	}
	tm, err := Load(theirs)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	defer f.Close()
	ours, err := Create(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if tm.MappedBytes() != ours.MappedBytes() || tm.Ranges[0].Checksum != ours.Ranges[0].Checksum {
		t.Fatalf("bmaptool maps %d bytes (first sum %s), we map %d (%s)", tm.MappedBytes(), tm.Ranges[0].Checksum, ours.MappedBytes(), ours.Ranges[0].Checksum)
	}
	data, _ := ours.Marshal()
	bm := p + ".bmap"
	os.WriteFile(bm, data, 0o644)
	dst := filepath.Join(t.TempDir(), "copy.img")
	if out, err := exec.Command("bmaptool", "copy", "--bmap", bm, p, dst).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy rejected our bmap: %v\n%s", err, out)
	}
	if out, err := exec.Command("cmp", p, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy differs: %s", out)
	}
}
