package vmrunner

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// need returns the path of a tool the test uses as a peer; it skips without it (fails under CI=true).
func need(t *testing.T, tool string) string {
	t.Helper()
	return testenv.Tool(t, tool)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func blankFile(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func gptImage(t *testing.T, typeCode string) string {
	need(t, "sgdisk")
	p := blankFile(t, "gpt.img", 8<<20)
	run(t, "sgdisk", "-n1:2048:+2M", "-t1:"+typeCode, "-n2:0:0", "-t2:8300", p)
	return p
}

func TestInspect(t *testing.T) {
	tests := []struct {
		name   string
		make   func(t *testing.T) string
		format Format
		efi    bool
	}{
		{"MBR boot sector", func(t *testing.T) string { return writeMBRImage(t, "mbr.img") }, FormatRaw, false},
		{"GPT with an EFI system partition", func(t *testing.T) string { return gptImage(t, "ef00") }, FormatRaw, true},
		{"GPT without an EFI system partition", func(t *testing.T) string { return gptImage(t, "8300") }, FormatRaw, false},
		{"MBR with an EFI partition (type 0xef)", func(t *testing.T) string {
			need(t, "sfdisk")
			p := blankFile(t, "mbr-efi.img", 8<<20)
			cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
			cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=4096, type=ef\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
			return p
		}, FormatRaw, true},
		{"qcow2 of a GPT disk with an ESP", func(t *testing.T) string {
			need(t, "qemu-img")
			src := gptImage(t, "ef00")
			p := filepath.Join(t.TempDir(), "disk.qcow2")
			run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, p)
			return p
		}, FormatQCOW2, true},
		{"qcow2 of an MBR-only disk", func(t *testing.T) string {
			need(t, "qemu-img")
			p := filepath.Join(t.TempDir(), "mbr.qcow2")
			run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", writeMBRImage(t, "m.img"), p)
			return p
		}, FormatQCOW2, false},
		{"ISO 9660 with a BIOS boot entry", func(t *testing.T) string { return isoImage(t, false) }, FormatISO, false},
		{"ISO 9660 with an EFI boot entry", func(t *testing.T) string { return isoImage(t, true) }, FormatISO, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(tt.make(t))
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != tt.format || info.EFI != tt.efi {
				t.Errorf("Inspect = %+v, want format %s, EFI %v", info, tt.format, tt.efi)
			}
		})
	}
}

// isoImage builds an ISO 9660 image with xorriso whose El Torito catalog boots the test boot
// sector on BIOS and, with efi, a FAT image on EFI.
func isoImage(t *testing.T, efi bool) string {
	need(t, "xorriso")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "boot.bin"), mbrImage()[:2048], 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-as", "mkisofs", "-quiet", "-o", filepath.Join(t.TempDir(), "test.iso"), "-V", "KILNTEST",
		"-b", "boot.bin", "-no-emul-boot", "-boot-load-size", "4"}
	if efi {
		need(t, "mkfs.vfat")
		run(t, "mkfs.vfat", "-C", filepath.Join(root, "efi.img"), "1440")
		args = append(args, "-eltorito-alt-boot", "-e", "efi.img", "-no-emul-boot")
	}
	args = append(args, root)
	run(t, "xorriso", args...)
	return args[4]
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path string
		is         error
		mention    string
	}{
		{"missing", filepath.Join(dir, "nope.img"), ErrImageNotFound, "check the path"},
		{"xz-compressed", write("a.img.xz", append([]byte("\xfd7zXZ\x00"), make([]byte, 4096)...)), ErrUnknownFormat, "xz -dk"},
		{"zstd-compressed", write("a.img.zst", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, make([]byte, 4096)...)), ErrUnknownFormat, "zstd -d"},
		{"VMDK", write("a.vmdk", append([]byte("KDMV"), make([]byte, 4096)...)), ErrUnknownFormat, "qemu-img convert"},
		{"no partition table", write("zeros.img", make([]byte, 1<<20)), ErrUnknownFormat, "--format raw"},
		{"empty", write("empty.img", nil), ErrUnknownFormat, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(tt.path)
			if !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q should name the file and say %q", err, tt.mention)
			}
		})
	}
	if _, err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("Inspect(dir) = %v, want a 'directory' error", err)
	}
}
