//go:build linux

package dpkgconf_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
)

// linkTree fills dst with the files of src (hard links to the readable ones where they can be
// made, else copies), its directories owned by uid:gid.
func linkTree(t *testing.T, src, dst string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			return os.Chown(to, uid, gid)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o004 == 0 || os.Link(p, to) != nil { // a link to a private file would not be readable
				copyFile(t, p, to, 0o644)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBuildAsUser builds a package image whose maintainer scripts create a system user and chown
// files to it (mosquitto) with `kiln build` as root and as an ordinary user with a subordinate id
// range: the two images and manifests are byte-identical.
func TestBuildAsUser(t *testing.T) {
	cred := testenv.UnprivilegedUser(t)
	testenv.Tool(t, "newuidmap")
	kiln := os.Getenv("KILN_BIN")
	if _, err := os.Stat(kiln); kiln == "" || err != nil {
		testenv.Missing(t, "no kiln binary in KILN_BIN (run `make build`)")
	}
	cache := testimage.Cache(t)
	agent := testimage.Agent(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	dir := rootlessDir(t, cred)
	uid, gid := int(cred.Uid), int(cred.Gid)
	for _, d := range []string{"inputs", "recipe", "keys", "rootout", "rootcache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, kiln, filepath.Join(dir, "kiln"), 0o755)
	copyFile(t, agent, filepath.Join(dir, "kiln-agent"), 0o755)
	input := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(cache, "debs", pattern))
		if len(m) == 0 {
			testenv.Missing(t, "no %s in %s/debs (run `make inputs`)", pattern, cache)
		}
		p := filepath.Join(dir, "inputs", filepath.Base(m[len(m)-1]))
		copyFile(t, m[len(m)-1], p, 0o644)
		return p
	}
	recipe := "kiln = 1\nname = \"rootless\"\nversion = \"1.0.0\"\n" +
		"[kernel]\npackage = \"" + input("linux-image-[0-9]*_*.deb") + "\"\n" +
		"[board]\nbootloader = \"" + input("systemd-boot-efi_*.deb") + "\"\n" +
		"[system]\nbusybox = \"" + input("busybox-static_*.deb") + "\"\npackages = [\"mosquitto\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "recipe", "kiln.toml"), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	// The root build uses the input cache without its configured package trees, so the
	// maintainer scripts run.
	for _, d := range []string{"debs", "sha256", "kmod", "kernels", "hashes"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(cache, d), filepath.Join(dir, "rootcache", d)); err != nil {
			t.Fatal(err)
		}
	}
	build := func(who string, cred *syscall.Credential, cache, home, out string) time.Duration {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "kiln"), "build", "--verbose", "--recipe", "kiln.toml", "--out", out)
		cmd.Dir = filepath.Join(dir, "recipe")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "TMPDIR=" + home, "KILN_CACHE=" + cache,
			"KILN_KEYS=" + filepath.Join(dir, "keys"), "KILN_AGENT=" + filepath.Join(dir, "kiln-agent"), "SOURCE_DATE_EPOCH=1704067200"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.WaitDelay = 5 * time.Second
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("kiln build as %s: %v\n%s", who, err, log.Bytes())
		}
		d := time.Since(start)
		conf := regexp.MustCompile(`packages configured.*`).Find(log.Bytes())
		t.Logf("kiln build as %s: %.1fs (%s)", who, d.Seconds(), conf)
		return d
	}
	build("root", nil, filepath.Join(dir, "rootcache"), filepath.Join(dir, "rootout"), filepath.Join(dir, "rootout", "out"))

	// The user's cache holds the same inputs (it cannot read root's); the lockfile and update keys
	// are the root build's.
	tmp := filepath.Join(dir, "tmp")
	userCache := filepath.Join(tmp, "cache")
	for _, d := range []string{"debs", "sha256", "kmod", "kernels", "hashes"} {
		linkTree(t, filepath.Join(cache, d), filepath.Join(userCache, d), uid, gid)
	}
	if err := os.Chown(userCache, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(filepath.Join(dir, "keys"), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	build(testenv.BuildUser, cred, userCache, tmp, filepath.Join(tmp, "out"))
	if m, _ := filepath.Glob(filepath.Join(userCache, "configured", "*.tar")); len(m) == 0 {
		t.Errorf("the build as %s configured no packages (no tree in %s/configured)", testenv.BuildUser, userCache)
	}
	for _, f := range []string{"rootless.img", "manifest.json"} {
		a, err := os.ReadFile(filepath.Join(dir, "rootout", "out", f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(tmp, "out", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the build as root and as %s", f, testenv.BuildUser)
		}
	}
	if s := strays(dir); len(s) > 0 {
		t.Errorf("processes left running: %v", s)
	}
}
