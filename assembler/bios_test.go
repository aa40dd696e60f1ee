package assembler_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

const biosRecipe = `
kiln = 1
name = "oldpc"
version = "1.0.0"
[board]
firmware = "bios"
[system]
hostname = "oldpc-bios"
`

const hybridRecipe = `
kiln = 1
name = "anypc"
version = "1.0.0"
[board]
firmware = "hybrid"
[system]
hostname = "anypc-hybrid"
`

// TestBootHybrid boots one hybrid image under SeaBIOS and under OVMF.
func TestBootHybrid(t *testing.T) {
	needGRUB(t)
	res := testimage.Build(t, hybridRecipe)
	for _, fw := range []vmrunner.FirmwareKind{vmrunner.FirmwareBIOS, vmrunner.FirmwareUEFI} {
		t.Run(string(fw), func(t *testing.T) {
			g := bootVM(t, vmrunner.Config{Image: res.Image, Firmware: fw})
			g.expect(regexp.MustCompile(`kiln: ready name=anypc version=1\.0\.0 hostname=anypc-hybrid\b`), bootTimeout)
			t.Logf("%s: ready line after %.1fs", fw, time.Since(g.start).Seconds())
		})
	}
}

// TestBIOSImagesReproducibleAndChecked builds a hybrid image with an ISO twice: the outputs are
// byte-identical, and sgdisk, fdisk and fsck.vfat accept the disk.
func TestBIOSImagesReproducibleAndChecked(t *testing.T) {
	needGRUB(t)
	recipe := hybridRecipe + "[outputs]\niso = true\n"
	a, b := testimage.Build(t, recipe), testimage.Build(t, recipe)
	for _, p := range [][2]string{{a.Image, b.Image}, {a.ISO, b.ISO}, {a.Manifest, b.Manifest}} {
		if testimage.SHA256(t, p[0]) != testimage.SHA256(t, p[1]) {
			t.Errorf("%s differs between two builds", filepath.Base(p[0]))
		}
	}
	out := runTool(t, "sgdisk", "-v", a.Image)
	if !strings.Contains(out, "No problems found.") || strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	if out := runTool(t, "fdisk", "-l", a.Image); !strings.Contains(out, "BIOS boot") || !strings.Contains(out, "EFI System") {
		t.Errorf("fdisk -l:\n%s", out)
	}
	esp := filepath.Join(t.TempDir(), "esp.img")
	runTool(t, "dd", "if="+a.Image, "of="+esp, "bs=1M", "skip=1", "count=192", "conv=sparse", "status=none")
	fsck := runTool(t, "fsck.vfat", "-n", esp)
	if strings.Contains(strings.ToLower(fsck), "wrong") || strings.Contains(fsck, "differences") {
		t.Errorf("fsck.vfat -n:\n%s", fsck)
	}
	for _, f := range []string{"::/grub/grub.cfg", "::/grub/grubenv", "::/kiln/anypc-1.0.0/linux", "::/EFI/BOOT/BOOTX64.EFI"} {
		if dir := runTool(t, "mdir", "-/", "-b", "-i", esp, "::"); !strings.Contains(dir, f) {
			t.Errorf("ESP lacks %s:\n%s", f, dir)
		}
	}
}

// TestBootBIOS boots a BIOS image: boot.img, the core image Kiln assembled, GRUB's script on the
// ESP, then a slot's kernel and initramfs up to the ready line. Preview picks SeaBIOS for it by
// itself; the boot goes through --firmware FILE with Debian's SeaBIOS ROM as a coreboot-style ROM,
// which covers both. The image has a trial slot that does not boot, as a broken update leaves it:
// GRUB tries it as often as grubenv says (counting down and saving the count), then the default
// slot boots again by itself, and the agent on it records GRUB's count on the trial UKI and drops
// the slot from grubenv (A/B fallback).
func TestBootBIOS(t *testing.T) {
	needGRUB(t)
	res := testimage.Build(t, biosRecipe)
	info, err := vmrunner.Inspect(res.Image)
	if err != nil || info.EFI {
		t.Fatalf("preview would boot a BIOS image with UEFI (inspect: %+v, %v)", info, err)
	}
	rom := "/usr/share/seabios/bios-256k.bin"
	if _, err := os.Stat(rom); err != nil {
		testimage.Missing(t, "no SeaBIOS ROM (apt-get install seabios): "+err.Error())
	}
	img := res.Image
	at := img + "@@1M"
	uki, err := os.ReadFile(res.UKI)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	put := func(name string, data []byte, dst string) {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		runTool(t, "mcopy", "-o", "-i", at, p, dst)
	}
	// Version 2.0.0 on trial with 3 tries: its kernel is not a kernel.
	runTool(t, "mmd", "-i", at, "::/kiln/oldpc-2.0.0")
	put("linux", []byte("not a kernel"), "::/kiln/oldpc-2.0.0/linux")
	put("initrd", []byte{}, "::/kiln/oldpc-2.0.0/initrd")
	put("boot.cfg", []byte("linux /kiln/oldpc-2.0.0/linux\ninitrd /kiln/oldpc-2.0.0/initrd\n"), "::/kiln/oldpc-2.0.0/boot.cfg")
	put("trial.efi", uki, "::/EFI/Linux/oldpc-2.0.0+3.efi")
	// grubenv in place (GRUB writes it through its block list).
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("# GRUB Environment Block\nkiln_default=oldpc-1.0.0\nkiln_trial=\nkiln_tries=0\n")
	i := bytes.Index(b, old)
	if i < 0 {
		t.Fatal("grubenv not found in the image")
	}
	env := []byte("# GRUB Environment Block\nkiln_default=oldpc-1.0.0\nkiln_trial=oldpc-2.0.0\nkiln_tries=3\n")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(append(env, bytes.Repeat([]byte("#"), 1024-len(env))...), int64(i))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b = nil

	// GRUB and the agent write to the disk: boot a writable copy.
	g := bootVM(t, vmrunner.Config{Image: img, Firmware: vmrunner.FirmwareFile, FirmwareFile: rom,
		Persist: filepath.Join(tmp, "disk.img")})
	for n := 1; n <= 3; n++ {
		g.expect(regexp.MustCompile(`kiln: booting oldpc-2\.0\.0`), bootTimeout)
		g.expect(regexp.MustCompile(`kiln: oldpc-2\.0\.0 did not boot; restarting`), bootTimeout)
	}
	g.expect(regexp.MustCompile(`kiln: booting oldpc-1\.0\.0`), bootTimeout)
	g.expect(regexp.MustCompile(`kiln: ready name=oldpc version=1\.0\.0 hostname=oldpc-bios\b`), bootTimeout)
	t.Logf("ready line after %.1fs (three failed trial boots first)", time.Since(g.start).Seconds())
	g.expect(regexp.MustCompile(`GRUB slots updated`), bootTimeout)
	g.send("\n")
	g.send(`echo =BE""GIN=; ls /boot/efi/EFI/Linux /boot/efi/kiln; cat /boot/efi/grub/grubenv | grep kiln_; echo =E""ND=` + "\n")
	m := g.expect(regexp.MustCompile(`(?s)=BEGIN=\r?\n(.*?)=END=`), bootTimeout)
	for _, want := range []string{"oldpc-2.0.0+0-3.efi", "kiln_default=oldpc-1.0.0", "kiln_tries=0"} {
		if !strings.Contains(m[1], want) {
			t.Errorf("after the fallback the ESP lacks %q:\n%s", want, m[1])
		}
	}
	if regexp.MustCompile(`kiln_trial=\S`).MatchString(m[1]) || strings.Contains(m[1], "oldpc-2.0.0\r\n") {
		t.Errorf("the failed slot is still in use:\n%s", m[1])
	}
}

// needGRUB stops the test through Missing when GRUB's package is not in the input cache.
func needGRUB(t *testing.T) {
	t.Helper()
	cache := testimage.Cache(t)
	if m, _ := filepath.Glob(filepath.Join(cache, "debs", "grub-pc-bin_*.deb")); len(m) == 0 {
		testimage.Missing(t, "input package grub-pc-bin not in "+filepath.Join(cache, "debs")+" (run `make inputs`)")
	}
}
