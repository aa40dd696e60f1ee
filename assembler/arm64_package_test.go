package assembler_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

// newSSHKey makes an ed25519 key pair for a test user: the signer to log in with and the
// authorized_keys line for the recipe.
func newSSHKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " test@kiln"
}

// sshRun runs cmd in a new session of c and returns its trimmed output; a failure is an error
// of the test.
func sshRun(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("ssh session: %v", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestArm64PackageImageSSH builds a package image for the arm64-uefi board on this host — the
// packages' maintainer scripts run under QEMU user emulation — boots it on QEMU's virt machine
// and logs in over SSH with the recipe's key: the packages are arm64 builds, dpkg knows them,
// and they run.
func TestArm64PackageImageSSH(t *testing.T) {
	if srcs, err := archive.HostSources("/"); err != nil || len(srcs) == 0 {
		testimage.Missing(t, "the host has no apt sources to take packages from")
	}
	if runtime.GOARCH != "arm64" {
		if b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil || !strings.HasPrefix(string(b), "enabled") {
			testimage.Missing(t, "QEMU user emulation for arm64 is not registered with binfmt_misc (apt-get install qemu-user-static binfmt-support)")
		}
	}
	if _, err := vmrunner.FindQEMUFor("", vmrunner.Machines["virt"]); err != nil {
		testimage.Missing(t, "qemu-system-aarch64 not installed: "+err.Error())
	}
	ctx := t.Context()
	opts := testimage.OptionsArch(t, "arm64", "linux-image-arm64", "busybox-static", "systemd-boot-efi")
	signer, authorized := newSSHKey(t)
	src := "kiln = 1\nname = \"garden-arm\"\nversion = \"1.0.0\"\n[board]\nname = \"arm64-uefi\"\n" +
		"[system]\npackages = [\"hello\"]\n" +
		"[[system.users]]\nname = \"gardener\"\nssh_keys = [\"" + authorized + "\"]\n"
	r, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	start := time.Now()
	res, err := assembler.Build(ctx, r, opts)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Logf("built in %.1fs", time.Since(start).Seconds())

	g := bootVM(t, vmrunner.Config{Image: res.Image, Machine: "virt", Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024})
	g.expect(regexp.MustCompile(`kiln: ready name=garden-arm`), sshBootTimeout)
	t.Logf("ready %.1fs after boot", time.Since(g.start).Seconds())
	var c *ssh.Client
	for c == nil && ctx.Err() == nil && time.Since(g.start) < sshBootTimeout {
		if c, err = dialSSH(ctx, g.vm.Info().SSHPort, "gardener", ssh.PublicKeys(signer), nil); err != nil {
			time.Sleep(time.Second)
		}
	}
	if c == nil {
		t.Fatalf("ssh login as gardener: %v", err)
	}
	defer c.Close()
	if got := sshRun(t, c, "hello; uname -m; dpkg --print-architecture"); got != "Hello, world!\naarch64\narm64" {
		t.Errorf("hello; uname -m; dpkg --print-architecture:\n%s", got)
	}
	if got := sshRun(t, c, "dpkg-query -W -f '${db:Status-Abbrev}${Package}:${Architecture}\\n' hello libc6"); got != "ii hello:arm64\nii libc6:arm64" {
		t.Errorf("dpkg lists:\n%s", got)
	}
}
