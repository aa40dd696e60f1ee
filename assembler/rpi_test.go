package assembler_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

const piRecipe = "kiln = 1\nname = \"tiny-pi\"\nversion = \"1.0.0\"\n[board]\nname = \"rpi\"\n[system]\nhostname = \"pihost\"\n"

func buildPi(t *testing.T) *assembler.Result {
	t.Helper()
	opts := testimage.OptionsArch(t, "arm64", "linux-image-arm64", "busybox-static", "systemd-boot-efi")
	if m, _ := filepath.Glob(filepath.Join(assembler.DebsDir(opts.Cache, "arm64"), "raspi-firmware_*.deb")); len(m) == 0 {
		testimage.Missing(t, "input package raspi-firmware not in "+assembler.DebsDir(opts.Cache, "arm64")+" (run `make inputs`)")
	}
	r, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(piRecipe))
	if err != nil {
		t.Fatal(err)
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatalf("build rpi: %v", err)
	}
	return res
}

// TestPiImage builds the rpi board's image and checks it as the Pi firmware and a user would:
// the MBR with sfdisk, each FAT with fsck.vfat, the boot files with mtools against the manifest,
// then boots it on QEMU's raspi3b to the recipe's hostname.
func TestPiImage(t *testing.T) {
	res := buildPi(t)
	m := loadManifest(t, res)
	if m.Arch != "aarch64" || len(m.Partitions) != 4 {
		t.Fatalf("manifest: arch %s, partitions %+v", m.Arch, m.Partitions)
	}
	out, err := exec.Command(testenv.Tool(t, "sfdisk"), "--dump", res.Image).Output()
	if err != nil || !strings.Contains(string(out), "label: dos") || strings.Count(string(out), "type=c") != 4 {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	data, err := os.ReadFile(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fsck, mtype := testenv.Tool(t, "fsck.vfat"), testenv.Tool(t, "mtype")
	part := map[string]string{}
	for _, p := range m.Partitions {
		f := filepath.Join(dir, p.Name)
		os.WriteFile(f, data[p.Offset:p.Offset+p.Size], 0o644)
		if out, err := exec.Command(fsck, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat -n %s: %v\n%s", p.Name, err, out)
		}
		part[p.Name] = f
	}
	read := func(p, name string) []byte {
		b, err := exec.Command(mtype, "-i", part[p], "::"+name).Output()
		if err != nil {
			t.Errorf("mtype %s %s: %v", p, name, err)
		}
		return b
	}
	if ab, err := rpiboot.ParseAutoboot(read("autoboot", rpiboot.AutobootFile)); err != nil || ab != (rpiboot.Autoboot{Boot: 2, Try: 3}) {
		t.Errorf("autoboot.txt: %+v %v", ab, err)
	}
	conf := string(read("boot-a", "config.txt"))
	for _, want := range []string{"arm_64bit=1\n", "kernel=vmlinuz\n", "initramfs initrd.img followkernel\n", "enable_uart=1\n",
		"[pi3]\ndevice_tree=bcm2837-rpi-3-b.dtb\n", "[pi4]\ndevice_tree=bcm2711-rpi-4-b.dtb\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config.txt lacks %q:\n%s", want, conf)
		}
	}
	if got := string(read("boot-a", "cmdline.txt")); !strings.Contains(got, "console=serial0,115200") || !strings.HasSuffix(got, " kiln.slot=2\n") {
		t.Errorf("cmdline.txt %q", got)
	}
	// Every file of slot A is the one the manifest records.
	files := 0
	for _, f := range m.Files {
		name, ok := strings.CutPrefix(f.Path, "boot-a:/")
		if !ok || f.SHA256 == "" {
			continue
		}
		files++
		sum := sha256.Sum256(read("boot-a", name))
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("boot-a %s differs from the manifest", name)
		}
	}
	if files < 10 {
		t.Errorf("the manifest records %d files of slot A", files)
	}
	if !bytes.Equal(read("boot-a", "bootcode.bin"), read("autoboot", "bootcode.bin")) {
		t.Error("bootcode.bin differs between partition 1 and slot A")
	}

	g := bootVM(t, vmrunner.Config{Image: res.Image})
	g.expect(regexp.MustCompile(`data partition /dev/mmcblk0p4 mounted on /data`), 4*time.Minute)
	g.expect(regexp.MustCompile(`Raspberry Pi boot partitions mounted on /boot/rpi`), time.Minute)
	g.expect(regexp.MustCompile(`kiln: ready name=tiny-pi version=1\.0\.0 hostname=pihost`), time.Minute)
	t.Logf("raspi3b: ready line after %v", time.Since(g.start).Round(100*time.Millisecond))
}

// TestPiImageReproducible: two builds of the rpi recipe give the same image.
func TestPiImageReproducible(t *testing.T) {
	a, b := buildPi(t), buildPi(t)
	if testimage.SHA256(t, a.Image) != testimage.SHA256(t, b.Image) {
		t.Fatal("two builds of the same recipe differ")
	}
}

// The rpi board's firmware package comes from the archive's non-free-firmware component, which
// the recipe's sources gain.
func TestPiArchiveComponent(t *testing.T) {
	toml := piRecipe + "[archive]\nmirrors = [\"http://mirror.invalid/debian\"]\nsuites = [\"bookworm\"]\nkeyring = \"keys.gpg\"\n"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keys.gpg"), []byte("key"), 0o644)
	r, err := recipe.Parse(filepath.Join(dir, "kiln.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := assembler.ArchiveSources(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 1 || strings.Join(srcs[0].Components, ",") != "main,non-free-firmware" {
		t.Fatalf("sources %+v", srcs)
	}
}
