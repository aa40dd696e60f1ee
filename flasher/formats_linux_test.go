package flasher

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnproject/kiln/flasher/source"
)

// TestFlashEveryFormat compresses an image with the usual tools, flashes each file to a loop device
// and compares the device with the uncompressed image.
func TestFlashEveryFormat(t *testing.T) {
	needRoot(t, "cmp", "gzip", "pigz", "igzip", "xz", "zstd", "bzip2", "zip")
	dir := t.TempDir()
	img := testImage(t, dir, 21<<20+512)
	iso := filepath.Join(dir, "test.iso")
	run(t, "cp", img, iso)
	sh := func(cmd string) { run(t, "sh", "-c", cmd) }
	sh("gzip -k -c " + img + " > " + img + ".gz")
	sh("pigz -c " + img + " > " + filepath.Join(dir, "pigz.img.gz"))
	sh("xz -k -c -T2 --block-size=4MiB " + img + " > " + img + ".xz")    // several blocks
	sh("xz -c -T1 " + img + " > " + filepath.Join(dir, "single.img.xz")) // one block
	sh("xz -c --check=sha256 --block-size=3MiB -T2 " + img + " > " + filepath.Join(dir, "sha.img.xz"))
	sh("cat " + img + ".xz " + img + ".xz > " + filepath.Join(dir, "double.img.xz"))
	sh("zstd -q -T0 -c " + img + " > " + img + ".zst")
	sh("bzip2 -k -c " + img + " > " + img + ".bz2")
	os.WriteFile(filepath.Join(dir, "README"), []byte("read me"), 0o644)
	sh("cd " + dir + " && zip -q -1 test.zip test.img README")

	cases := []struct {
		file, format, xz string
		exact            bool
	}{
		{img, source.Raw, "", true},
		{iso, source.Raw, "", true},
		{img + ".gz", source.Gzip, "go", false},
		{filepath.Join(dir, "pigz.img.gz"), source.Gzip, "go", false},
		{filepath.Join(dir, "pigz.img.gz"), source.Gzip, "pigz", false},
		{filepath.Join(dir, "pigz.img.gz"), source.Gzip, "igzip", false},
		{img + ".gz", source.Gzip, "exec", false},
		{img + ".xz", source.XZ, "exec", true},
		{img + ".xz", source.XZ, "go", true},
		{filepath.Join(dir, "single.img.xz"), source.XZ, "go", true},
		{filepath.Join(dir, "sha.img.xz"), source.XZ, "go", true},
		{filepath.Join(dir, "double.img.xz"), source.XZ, "go", true},
		{img + ".zst", source.Zstd, "", true},
		{img + ".bz2", source.Bzip2, "", false},
		{filepath.Join(dir, "test.zip"), source.Zip, "", true},
	}
	dev := loopDevice(t, 48<<20)
	for _, c := range cases {
		t.Run(filepath.Base(c.file)+"/"+c.xz, func(t *testing.T) {
			want := img
			if filepath.Base(c.file) == "double.img.xz" {
				want = filepath.Join(dir, "double.img")
				sh("cat " + img + " " + img + " > " + want)
			}
			fi, _ := os.Stat(want)
			// Clear the device first so a stale image cannot pass.
			sh("dd if=/dev/zero of=" + dev + " bs=1M count=48 status=none conv=fsync")
			job, err := Prepare(c.file, []string{dev}, Options{Decoder: c.xz, NoBmap: true})
			if err != nil {
				t.Fatal(err)
			}
			if job.Image.Format != c.format {
				t.Errorf("format %s, want %s", job.Image.Format, c.format)
			}
			if c.exact && job.Image.Size != fi.Size() {
				t.Errorf("size from headers %d, want %d", job.Image.Size, fi.Size())
			}
			if !c.exact && (job.Image.MinSize > fi.Size() || job.Image.Size != -1) {
				t.Errorf("size hint %d/%d for %d", job.Image.Size, job.Image.MinSize, fi.Size())
			}
			res, err := job.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !res[0].Verified || res[0].Written != fi.Size() || res[0].ImageSize != fi.Size() {
				t.Fatalf("%+v", res[0])
			}
			cmpDevice(t, dev, want)
		})
	}
}

func TestCorruptCompressedImageFails(t *testing.T) {
	needRoot(t, "xz")
	dir := t.TempDir()
	img := testImage(t, dir, 6<<20)
	run(t, "sh", "-c", "xz -c -T2 --block-size=1MiB "+img+" > "+img+".xz")
	b, _ := os.ReadFile(img + ".xz")
	b[len(b)/2] ^= 0xff
	os.WriteFile(img+".xz", b, 0o644)
	dev := loopDevice(t, 8<<20)
	for _, dec := range []string{"exec", "go"} {
		res, err := Flash(context.Background(), img+".xz", []string{dev}, Options{Decoder: dec})
		if err == nil || res[0].Verified {
			t.Fatalf("%s: a corrupt image flashed without error", dec)
		}
		t.Logf("%s: %v", dec, err)
	}
}
