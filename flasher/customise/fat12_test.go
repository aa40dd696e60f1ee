package customise_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
)

// TestFAT12BootPartition: a small board's 8 MiB FAT12 boot partition (mkfs.vfat -F 12) is
// customised in place: fsck.vfat -n finds nothing to fix, mtools and ReadFiles read the same new
// user-data, and every other file, in the root and in directories, is unchanged.
func TestFAT12BootPartition(t *testing.T) {
	dir := t.TempDir()
	im := customisetest.Make(t, dir, customisetest.Boot12)
	c, err := customise.New(customise.Settings{Hostname: "board-42", Users: []recipe.User{{Name: "ops", SSHKeys: []string{testKey}}}})
	if err != nil {
		t.Fatal(err)
	}
	f := extract(t, im)
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 0); err != nil || string(bs[54:62]) != "FAT12   " {
		t.Fatalf("mkfs.vfat -F 12 made no FAT12 boot sector (%v): %q", err, bs[54:62])
	}
	changed, note, err := c.Apply(context.Background(), f, im.BootSize)
	if err != nil || !changed || !strings.Contains(note, "user-data") {
		t.Fatalf("changed %v, note %q, error %v", changed, note, err)
	}
	files := customisetest.Check(t, f.Name(), im) // fsck.vfat -n, mtools, cloud-init schema
	if !strings.Contains(files["user-data"], "hostname: board-42") || !strings.Contains(files["meta-data"], "local-hostname: board-42") {
		t.Fatalf("user-data:\n%s\nmeta-data:\n%s", files["user-data"], files["meta-data"])
	}

	// Put the partition back into the image and read it there as the flasher's peers do.
	img, err := os.OpenFile(im.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := io.Copy(io.NewOffsetWriter(img, im.BootOffset), io.NewSectionReader(f, 0, im.BootSize)); err != nil {
		t.Fatal(err)
	}
	names := []string{"user-data", "meta-data", "u-boot.bin", "dtbs/board-a.dtb", "extlinux/extlinux.conf", "missing"}
	got, err := customise.ReadFiles(img, im.BootOffset, im.BootSize, names, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["user-data"]) != files["user-data"] {
		t.Errorf("ReadFiles user-data:\n%s\nmtools:\n%s", got["user-data"], files["user-data"])
	}
	for _, n := range names[2:5] {
		if !bytes.Equal(got[n], im.Files[n]) {
			t.Errorf("ReadFiles %s: %d bytes, want the image's %d", n, len(got[n]), len(im.Files[n]))
		}
	}
	if _, ok := got["missing"]; ok {
		t.Error("ReadFiles returned a file that does not exist")
	}
}
