package assembler_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

// TestBootCloudInit is a real cloud-init first boot: a package image with cloud-init and
// openssh-server and no users or keys in its recipe is flashed with first-boot settings (hostname,
// a user with an SSH key the test makes) onto a loop drive, verified, and the drive is booted under
// TCG: cloud-init applies the seed kiln flash wrote on the EFI system partition, the hostname is
// the one set, the user logs in with the key over SSH and a password login is refused.
func TestBootCloudInit(t *testing.T) {
	if srcs, err := archive.HostSources("/"); err != nil || len(srcs) == 0 {
		testimage.Missing(t, "the host has no apt sources to take packages from")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	opts := testimage.Options(t)
	debs := filepath.Join(opts.Cache, "debs")
	deb := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(debs, pattern))
		if len(m) == 0 {
			testimage.Missing(t, "no "+pattern+" in "+debs+" (run `make inputs`)")
		}
		return m[len(m)-1]
	}
	dir := t.TempDir()
	src := "kiln = 1\nname = \"cloudy\"\nversion = \"1.0.0\"\n" +
		"[kernel]\npackage = \"" + deb("linux-image-[0-9]*_*.deb") + "\"\n" +
		"[board]\nbootloader = \"" + deb("systemd-boot-efi_*.deb") + "\"\n" +
		"[system]\nhostname = \"kiln\"\nbusybox = \"" + deb("busybox-static_*.deb") + "\"\n" +
		"packages = [\"cloud-init\", \"openssh-server\"]\n"
	file := filepath.Join(dir, "kiln.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.OutDir = filepath.Join(dir, "out")
	start := time.Now()
	res, err := assembler.Build(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := loadManifest(t, res)
	t.Logf("built in %.1fs: %d MiB UKI", time.Since(start).Seconds(), m.UKI.Size>>20)
	seed := false
	for _, f := range m.Files {
		seed = seed || f.Path == "esp:/meta-data"
	}
	if !seed {
		t.Fatal("the manifest lists no NoCloud seed (esp:/meta-data) on the EFI system partition")
	}

	signer, key := newSSHKey(t)
	c, err := customise.New(customise.Settings{Hostname: "cloud-flashed",
		Users: []recipe.User{{Name: "alice", SSHKeys: []string{key}}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	dev := testenv.LoopDrive(t, st.Size(), false)
	start = time.Now()
	results, err := flasher.Flash(ctx, res.Image, []string{dev}, flasher.Options{Customise: c, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fr := results[0]
	t.Logf("flashed in %.1fs: %s", time.Since(start).Seconds(), fr.Customised)
	if !fr.Verified || !strings.Contains(fr.Customised, "cloudinit") || !strings.Contains(fr.Customised, "user-data") {
		t.Fatalf("flash result: verified %v, customised %q, warnings %q", fr.Verified, fr.Customised, fr.Warnings)
	}

	g := bootVM(t, vmrunner.Config{Image: dev, Format: vmrunner.FormatRaw, Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024})
	port := g.vm.Info().SSHPort
	g.expect(regexp.MustCompile(`kiln: ready name=cloudy version=1\.0\.0 hostname=cloud-flashed`), cloudInitBootTimeout)
	t.Logf("ready %.1fs after boot", time.Since(g.start).Seconds())

	var client *ssh.Client
	var last error
	for deadline := time.Now().Add(90 * time.Second); ctx.Err() == nil && time.Now().Before(deadline); time.Sleep(time.Second) {
		if client, last = dialSSH(ctx, port, "alice", ssh.PublicKeys(signer), nil); last == nil {
			break
		}
	}
	if client == nil {
		// The console is a root shell (the recipe sets no password): show what went wrong.
		g.send("\necho logs; tail -n 20 /var/log/sshd.log /var/log/cloud-init-output.log; grep -B 3 -A 12 -E 'WARNING|ERROR' /var/log/cloud-init.log | tail -n 80; echo end-of-logs\n")
		g.expect(regexp.MustCompile(`(?s)end-of-logs.*end-of-logs`), 30*time.Second)
		t.Fatalf("ssh login as alice with the key: %v", last)
	}
	defer client.Close()
	t.Logf("logged in %.1fs after boot", time.Since(g.start).Seconds())
	run := func(cmd string) string { t.Helper(); return sshRun(t, client, cmd) }
	if got := run("hostname"); got != "cloud-flashed" {
		t.Errorf("hostname printed %q, want cloud-flashed", got)
	}
	if got := run("id -un; echo $HOME; cat ~/.ssh/authorized_keys"); got != "alice\n/home/alice\n"+key {
		t.Errorf("logged in as:\n%s\nwant alice with the key cloud-init wrote", got)
	}
	// Every module cloud-init ran succeeded (alice is in group adm, which may read the log).
	if got := run("test -r /var/log/cloud-init.log || echo cannot read the log; grep -o 'Running module [^ ]* .* failed' /var/log/cloud-init.log || true"); got != "" {
		t.Errorf("cloud-init modules failed:\n%s", got)
	}
	// A password login is refused: the server does not even offer it (the image's sshd_config allows
	// it; cloud-init's ssh_pwauth: false, from the key-only settings, turned it off).
	asked := false
	_, err = dialSSH(ctx, port, "alice", ssh.PasswordCallback(func() (string, error) { asked = true; return "alice", nil }), nil)
	if err == nil {
		t.Error("a password login was accepted")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password login: %v, want an authentication failure", err)
	}
	if asked {
		t.Error("the SSH server offers password login; cloud-init's ssh_pwauth: false did not apply")
	}
}

// cloudInitBootTimeout bounds the boot of the cloud-init image under TCG, cloud-init's four stages
// included.
const cloudInitBootTimeout = 5 * time.Minute
