package assembler_test

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

const isoRecipe = `
kiln = 1
name = "disc"
version = "1.0.0"
[system]
hostname = "disc-iso"
[outputs]
iso = true
`

var isoReady = regexp.MustCompile(`kiln: ready name=disc version=1\.0\.0 hostname=disc-iso\b`)

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestISOCheckedByPeers builds an ISO and has xorriso, fdisk and fsck.vfat read it; the manifest
// and block map describe it.
func TestISOCheckedByPeers(t *testing.T) {
	needGRUB(t)
	res := testimage.Build(t, isoRecipe)
	if res.ISO == "" {
		t.Fatal("no ISO in the result")
	}
	out := runTool(t, "xorriso", "-indev", res.ISO, "-report_el_torito", "plain")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`El Torito boot img :\s+1\s+BIOS\s+y\s+none`),
		regexp.MustCompile(`El Torito boot img :\s+2\s+UEFI\s+y\s+none`),
		regexp.MustCompile(`El Torito img path :\s+1\s+/BOOT/GRUB/ELTORITO\.IMG`),
		regexp.MustCompile(`El Torito img path :\s+2\s+/EFI/EFIBOOT\.IMG`),
	} {
		if !want.MatchString(out) {
			t.Errorf("xorriso -report_el_torito lacks %s:\n%s", want, out)
		}
	}
	// Hybrid MBR+GPT: the GPT's one partition is the EFI image, as an EFI system partition.
	fd := runTool(t, "fdisk", "-l", res.ISO)
	if !regexp.MustCompile(`Disklabel type: gpt`).MatchString(fd) ||
		!regexp.MustCompile(`disc\.iso1 +\d+ +\d+ +\d+ +[\d.]+M +EFI System`).MatchString(fd) {
		t.Errorf("fdisk -l shows no GPT with an EFI system partition:\n%s", fd)
	}
	if v := runTool(t, "sgdisk", "-v", res.ISO); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", v)
	}
	sys := runTool(t, "xorriso", "-indev", res.ISO, "-report_system_area", "plain")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`System area summary: MBR protective-msdos-label grub2-mbr .*GPT`),
		regexp.MustCompile(`GPT partition path :\s+1\s+/EFI/EFIBOOT\.IMG`),
		regexp.MustCompile(`MBR partition path :\s+2\s+/EFI/EFIBOOT\.IMG`),
	} {
		if !want.MatchString(sys) {
			t.Errorf("xorriso -report_system_area lacks %s:\n%s", want, sys)
		}
	}

	data, err := os.ReadFile(filepath.Join(filepath.Dir(res.ISO), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m assembler.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.ISO == nil || !m.ISO.ReadOnly || m.ISO.SHA256 != testimage.SHA256(t, res.ISO) || m.ISO.EFIBootLBA == 0 {
		t.Fatalf("manifest ISO entry: %+v", m.ISO)
	}
	if _, err := os.Stat(res.ISO + ".bmap"); err != nil {
		t.Error(err)
	}
	// The EFI image, as UEFI firmware reads it, is a clean FAT file system.
	f, err := os.Open(res.ISO)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	esp := filepath.Join(t.TempDir(), "esp.img")
	w, err := os.Create(esp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, int64(m.ISO.EFIBootLBA)*2048, m.ISO.EFIImage)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fsck := runTool(t, "fsck.vfat", "-n", esp)
	if strings.Contains(strings.ToLower(fsck), "wrong") || strings.Contains(fsck, "differences") {
		t.Errorf("fsck.vfat -n:\n%s", fsck)
	}
	if dir := runTool(t, "mdir", "-/", "-b", "-i", esp, "::"); !strings.Contains(dir, "::/EFI/BOOT/BOOTX64.EFI") || !strings.Contains(dir, "::/EFI/Linux/disc-1.0.0.efi") {
		t.Errorf("ESP image:\n%s", dir)
	}
}

// TestBootISO boots the ISO as a CD-ROM under SeaBIOS and OVMF, then writes it to a loop device
// and boots that as a USB stick under both.
func TestBootISO(t *testing.T) {
	needGRUB(t)
	res := testimage.Build(t, isoRecipe)
	for _, fw := range []vmrunner.FirmwareKind{vmrunner.FirmwareBIOS, vmrunner.FirmwareUEFI} {
		t.Run("cdrom-"+string(fw), func(t *testing.T) {
			g := bootVM(t, vmrunner.Config{Image: res.ISO, Firmware: fw, Attach: vmrunner.AttachCDROM})
			g.expect(isoReady, bootTimeout)
			t.Logf("ready line after %.1fs", time.Since(g.start).Seconds())
		})
	}
	st, err := os.Stat(res.ISO)
	if err != nil {
		t.Fatal(err)
	}
	dev := testenv.LoopDrive(t, (st.Size()+1<<20)/(1<<20)*(1<<20), false)
	runTool(t, "dd", "if="+res.ISO, "of="+dev, "bs=1M", "conv=fsync", "status=none")
	for _, fw := range []vmrunner.FirmwareKind{vmrunner.FirmwareBIOS, vmrunner.FirmwareUEFI} {
		t.Run("usb-"+string(fw), func(t *testing.T) {
			g := bootVM(t, vmrunner.Config{Image: dev, Format: vmrunner.FormatRaw, Firmware: fw, Attach: vmrunner.AttachUSB})
			g.expect(isoReady, bootTimeout)
			t.Logf("ready line after %.1fs", time.Since(g.start).Seconds())
		})
	}
}
