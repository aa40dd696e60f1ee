package assembler_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
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
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

// TestBootSSH builds a package image with python3, mosquitto and a recipe service, where a user has
// an SSH key and the recipe names no SSH server (Kiln adds one), boots it under TCG and logs in
// over SSH through a port forwarded on 127.0.0.1: python runs, mosquitto answers an MQTT CONNECT,
// the recipe's service serves, dpkg lists the packages, a password login is refused, and after a
// reboot the server shows the same host key (made on first boot, kept on the data partition).
func TestBootSSH(t *testing.T) {
	if srcs, err := archive.HostSources("/"); err != nil || len(srcs) == 0 {
		testimage.Missing(t, "the host has no apt sources to take packages from")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	opts := testimage.Options(t)
	// The input cache with an empty cache of configured packages, so the first build runs the
	// maintainer scripts.
	cache := t.TempDir()
	for _, d := range []string{"debs", "sha256", "kmod", "kernels", "hashes"} {
		if err := os.MkdirAll(filepath.Join(opts.Cache, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(opts.Cache, d), filepath.Join(cache, d)); err != nil {
			t.Fatal(err)
		}
	}
	opts.Cache = cache
	debs := filepath.Join(opts.Cache, "debs")
	deb := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(debs, pattern))
		if len(m) == 0 {
			testimage.Missing(t, "no "+pattern+" in "+debs+" (run `make inputs`)")
		}
		return m[len(m)-1]
	}
	signer, authorized := newSSHKey(t)

	dir := t.TempDir()
	src := "kiln = 1\nname = \"garden\"\nversion = \"1.0.0\"\n" +
		"[kernel]\npackage = \"" + deb("linux-image-[0-9]*_*.deb") + "\"\n" +
		"[board]\nbootloader = \"" + deb("systemd-boot-efi_*.deb") + "\"\n" +
		"[system]\nbusybox = \"" + deb("busybox-static_*.deb") + "\"\npackages = [\"python3\", \"mosquitto\"]\n" +
		"[[system.users]]\nname = \"gardener\"\nssh_keys = [\"" + authorized + "\"]\n" +
		"[[system.services]]\nname = \"garden\"\nuser = \"gardener\"\n" +
		"command = \"cd /tmp && exec python3 -m http.server 8000 --bind 127.0.0.1\"\n"
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
	t.Logf("built in %.1fs: %d MiB UKI, %d MiB root", time.Since(start).Seconds(), loadManifest(t, res).UKI.Size>>20, loadManifest(t, res).Root.Size>>20)
	checkRootLayout(t, res)
	m := loadManifest(t, res)
	for _, f := range m.Files {
		if strings.Contains(f.Path, "host_key") || strings.Contains(f.Path, "ssh_host_") {
			t.Errorf("the image carries an SSH host key: %s", f.Path)
		}
	}

	// A rebuild takes the configured packages from the cache and gives the same image.
	opts2 := opts
	opts2.OutDir = filepath.Join(dir, "out2")
	if res2, err := assembler.Build(ctx, r, opts2); err != nil {
		t.Fatal(err)
	} else if res2.ImageSHA256 != res.ImageSHA256 {
		t.Errorf("the rebuild from the cache of configured packages gave image %s, the first build %s", res2.ImageSHA256, res.ImageSHA256)
	}

	g := bootVM(t, vmrunner.Config{Image: res.Image, Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024})
	port := g.vm.Info().SSHPort
	g.expect(regexp.MustCompile(`kiln: ready name=garden`), sshBootTimeout)
	t.Logf("ready %.1fs after boot", time.Since(g.start).Seconds())

	var hostKeys [][]byte
	login := func() *ssh.Client {
		t.Helper()
		var last error
		for ctx.Err() == nil {
			var key []byte
			c, err := dialSSH(ctx, port, "gardener", ssh.PublicKeys(signer), func(k ssh.PublicKey) { key = k.Marshal() })
			if err == nil {
				hostKeys = append(hostKeys, key)
				return c
			}
			last = err
			time.Sleep(time.Second)
		}
		t.Fatalf("ssh login as gardener: %v", last)
		return nil
	}
	c := login()
	t.Logf("logged in %.1fs after boot", time.Since(g.start).Seconds())
	run := func(c *ssh.Client, cmd string) string { t.Helper(); return sshRun(t, c, cmd) }
	if got := run(c, "cat /run/kiln/root; findmnt -n -o FSTYPE,OPTIONS / | awk '{split($2, o, \",\"); print $1, o[1]}'"); got != "root-a\nerofs ro" {
		t.Errorf("root: %q, want the read-only EROFS root from root-a", got)
	}
	checkReadOnlyRoot(g)
	if got := run(c, "python3 -c 'print(6*7)'"); got != "42" {
		t.Errorf("python3 printed %q, want 42", got)
	}
	if got := run(c, "id -un; echo $HOME"); got != "gardener\n/home/gardener" {
		t.Errorf("logged in as %q", got)
	}
	// mosquitto (started from its package's unit) answers an MQTT 3.1.1 CONNECT with a CONNACK.
	mqtt := `python3 -c "import socket; s=socket.create_connection(('127.0.0.1',1883),10); s.sendall(bytes([0x10,12,0,4])+b'MQTT'+bytes([4,2,0,60,0,0])); print(s.recv(4).hex())"`
	var got string
	for i := 0; i < 20 && ctx.Err() == nil; i++ { // the broker may still be starting
		if got = run(c, mqtt+" 2>&1 || true"); got == "20020000" {
			break
		}
		time.Sleep(time.Second)
	}
	if got != "20020000" {
		t.Errorf("mosquitto: CONNACK %q, want 20020000", got)
	}
	// The recipe's service runs as its user.
	for i := 0; i < 20 && ctx.Err() == nil; i++ {
		if got = run(c, "wget -q -O- http://127.0.0.1:8000/ 2>&1 | grep -q '<h1>Directory listing' && echo serving || true"); got == "serving" {
			break
		}
		time.Sleep(time.Second)
	}
	if got != "serving" {
		t.Errorf("the garden service does not serve: %q\n%s", got, run(c, "cat /var/log/garden.log"))
	}
	if got := run(c, "ps -o user,args | grep '[h]ttp.server' | cut -d' ' -f1"); got != "gardener" {
		t.Errorf("the garden service runs as %q, want gardener", got)
	}
	if got := run(c, "dpkg-query -W -f '${db:Status-Abbrev}${Package}\\n' python3 mosquitto dropbear-bin dpkg | sort"); got !=
		"ii dpkg\nii dropbear-bin\nii mosquitto\nii python3" {
		t.Errorf("dpkg lists:\n%s", got)
	}
	if got := run(c, "dpkg -l mosquitto | awk '/^ii/ {print $1, $2}'; dpkg --version | head -1"); !strings.HasPrefix(got, "ii mosquitto\nDebian 'dpkg'") {
		t.Errorf("dpkg -l mosquitto; dpkg --version:\n%s\nwant Debian's dpkg listing mosquitto installed", got)
	}
	if got := run(c, "grep -c '^mosquitto:' /etc/passwd; stat -c '%U %a' /home/gardener/.ssh/authorized_keys"); got != "1\ngardener 600" {
		t.Errorf("accounts: %q, want mosquitto's system user and the key owned by gardener, 0600", got)
	}
	if _, err := dialSSH(ctx, port, "gardener", ssh.Password("gardener"), nil); err == nil {
		t.Error("a password login was accepted")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password login: %v, want an authentication failure", err)
	}

	// Reboot (from the root shell on the serial console): the host key on the data partition is
	// used again.
	c.Close()
	g.send("\nreboot\n")
	rebooted := time.Now()
	g.expect(regexp.MustCompile(`kiln: ready name=garden`), sshBootTimeout)
	c = login()
	defer c.Close()
	t.Logf("logged in again %.1fs after the reboot", time.Since(rebooted).Seconds())
	if !bytes.Equal(hostKeys[0], hostKeys[1]) {
		t.Error("the host key changed across a reboot")
	}
}

// sshBootTimeout bounds each boot of the package image (10 MiB UKI, root on root-a): 25–45 s
// under TCG on a loaded machine.
const sshBootTimeout = 4 * time.Minute

// dialSSH logs in on 127.0.0.1:port, reporting the server's host key to hostKey.
func dialSSH(ctx context.Context, port int, user string, auth ssh.AuthMethod, hostKey func(ssh.PublicKey)) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth}, Timeout: 20 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if hostKey != nil {
				hostKey(k)
			}
			return nil
		}}
	d := net.Dialer{Timeout: 10 * time.Second}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}
