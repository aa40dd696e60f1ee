package assembler_test

import (
	"crypto/sha256"
	"debug/elf"
	"debug/pe"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/testimage"
)

// arm64Recipe is the default recipe built for the arm64-uefi board.
const arm64Recipe = "kiln = 1\nname = \"tiny-arm\"\nversion = \"1.0.0\"\n[board]\nname = \"arm64-uefi\"\n[system]\nhostname = \"armhost\"\n"

// buildArm64 builds arm64Recipe from the arm64 inputs in Cache/debs-arm64.
func buildArm64(t *testing.T) (*assembler.Result, *recipe.Recipe) {
	t.Helper()
	opts := testimage.OptionsArch(t, "arm64", "linux-image-arm64", "busybox-static", "systemd-boot-efi")
	r, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(arm64Recipe))
	if err != nil {
		t.Fatal(err)
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatalf("build arm64-uefi: %v", err)
	}
	return res, r
}

func TestArm64UEFIImage(t *testing.T) {
	res, _ := buildArm64(t)
	m := loadManifest(t, res)
	if m.Arch != "aarch64" || m.Image.Arch != "aarch64" {
		t.Errorf("manifest arch %q / %q", m.Arch, m.Image.Arch)
	}
	if m.Board != (assembler.BoardInfo{Name: "arm64-uefi", Firmware: "uefi", Machine: "virt"}) {
		t.Errorf("manifest board %+v", m.Board)
	}
	if got := assembler.PreviewMachine(res.Image); got != "virt" {
		t.Errorf("PreviewMachine = %q, want virt", got)
	}
	files := map[string]assembler.PlacedFile{}
	for _, f := range m.Files {
		files[f.Path] = f
	}
	for _, p := range []string{"esp:/EFI/BOOT/BOOTAA64.EFI", "esp:/EFI/systemd/systemd-bootaa64.efi", "esp:/EFI/Linux/tiny-arm-1.0.0.efi",
		"initramfs:/usr/bin/kiln-agent", "initramfs:/bin/busybox"} {
		if _, ok := files[p]; !ok {
			t.Errorf("image lacks %s", p)
		}
	}
	for _, p := range []string{"esp:/EFI/BOOT/BOOTX64.EFI", "esp:/EFI/systemd/systemd-bootx64.efi"} {
		if _, ok := files[p]; ok {
			t.Errorf("arm64 image has %s", p)
		}
	}
	for _, in := range m.Inputs {
		if in.Package != "" && !strings.HasSuffix(in.Path, "_arm64.deb") && !strings.HasSuffix(in.Path, "_all.deb") {
			t.Errorf("input %s %s is not an arm64 package: %s", in.Role, in.Package, in.Path)
		}
		if in.Role == "kernel" && (in.Via == "" || !strings.HasPrefix(in.Via, "linux-image-arm64 ")) {
			t.Errorf("kernel %s not through the metapackage: via %q", in.Package, in.Via)
		}
	}

	// The UKI is an arm64 PE image whose .linux is an arm64 kernel Image ("ARM\x64" at 0x38).
	f, err := pe.Open(res.UKI)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != pe.IMAGE_FILE_MACHINE_ARM64 {
		t.Errorf("UKI machine %#x, want arm64", f.Machine)
	}
	var linux []byte
	for _, s := range f.Sections {
		if s.Name == ".linux" {
			linux, _ = s.Data()
		}
		if s.Name == ".cmdline" {
			d, _ := s.Data()
			if !strings.Contains(string(d), "console=ttyAMA0") {
				t.Errorf("cmdline %q lacks the board's console", d)
			}
		}
	}
	if len(linux) < 0x40 || string(linux[0x38:0x3c]) != "ARM\x64" {
		t.Errorf("UKI .linux is not an arm64 kernel Image")
	}
	// The agent inside is the arm64 build.
	if a := files["initramfs:/usr/bin/kiln-agent"]; a.Size < 1<<20 {
		t.Errorf("agent %+v", a)
	}
	armAgent := assembler.AgentFor(testimage.Agent(t), "arm64")
	ef, err := elf.Open(armAgent)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_AARCH64 {
		t.Fatalf("%s is %v, not the arm64 agent (run make build)", armAgent, ef.Machine)
	}
	data, err := os.ReadFile(armAgent)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	for _, in := range m.Inputs {
		if in.Role == "agent" && in.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("agent input %s (%s) is not %s", in.Path, in.SHA256, armAgent)
		}
	}
}

// Naming the pc board builds the very image the default recipe builds.
func TestPCBoardImageUnchanged(t *testing.T) {
	plain := defaultImage(t)
	r := recipe.Default()
	src, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	withBoard, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(strings.Replace(string(src), "[board]\n", "[board]\nname = \"pc\"\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if withBoard.Board.Name != "pc" {
		t.Fatalf("board name not set: %+v", withBoard.Board)
	}
	opts := testimage.Options(t)
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	opts.Lock = filepath.Join(t.TempDir(), "kiln.lock")
	res, err := assembler.Build(t.Context(), withBoard, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.ImageSHA256 != plain.ImageSHA256 || testimage.SHA256(t, res.Image) != testimage.SHA256(t, plain.Image) {
		t.Errorf("[board] name = \"pc\" changes the image: %s, default %s", res.ImageSHA256, plain.ImageSHA256)
	}
	if testimage.SHA256(t, res.UKI) != testimage.SHA256(t, plain.UKI) {
		t.Error("the UKIs differ")
	}
	if got := assembler.PreviewMachine(res.Image); got != "q35" {
		t.Errorf("PreviewMachine = %q, want q35", got)
	}
}
