package dpkgconf_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/dpkgconf"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/internal/testenv"
)

// shellTree is a tree with busybox as /bin/sh and a stand-in for dpkg (the script dpkg runs),
// three packages with preinsts and an unpacked status.
func shellTree(t *testing.T, dpkg string) *fstree.Tree {
	t.Helper()
	if err := dpkgconf.Check(); err != nil {
		testenv.Missing(t, "running maintainer scripts: %v", err)
	}
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		d, _ := os.UserCacheDir()
		cache = filepath.Join(d, "kiln")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "debs", "busybox-static_*.deb"))
	if len(m) == 0 {
		testenv.Missing(t, "no busybox-static in %s/debs (run `make inputs`)", cache)
	}
	pkg, err := deb.Open(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	tr := fstree.New()
	tr.Replace = true
	if err := tr.AddDeb(pkg, func(p string) bool { return p == "bin/busybox" || !strings.Contains(p, "/") }, nil); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddSymlink("bin/sh", "busybox", "test"))
	must(tr.AddFile("usr/bin/dpkg", []byte("#!/bin/sh\n"+dpkg), 0o755, "test"))
	for _, p := range []string{"a", "b", "c"} {
		must(tr.AddFile("var/lib/dpkg/info/"+p+".preinst", []byte("#!/bin/sh\nbusybox echo \"preinst $DPKG_MAINTSCRIPT_PACKAGE $1\" >>/order\n"), 0o755, p))
	}
	must(tr.AddFile("var/lib/dpkg/status", []byte("Package: a\nStatus: install ok unpacked\n\n"), 0o644, "test"))
	return tr
}

var packages = []dpkgconf.Package{{Name: "c", Arch: "all", Depends: "b"}, {Name: "b", Arch: "all", PreDepends: "a"}, {Name: "a", Arch: "all"}}

// TestConfigure runs preinsts in dependency order and "dpkg --configure -a" in a chroot, and
// reads back what the scripts did: the ownership they gave files, new files, and no host keys.
func TestConfigure(t *testing.T) {
	tr := shellTree(t, `busybox echo "dpkg $*" >>/order
busybox mkdir -p /srv/app /etc/ssh
busybox touch /srv/app/state
busybox chown 105:107 /srv/app/state
busybox chmod 4750 /srv/app/state
busybox echo secret >/etc/ssh/ssh_host_ed25519_key
busybox mkdir -p /var/cache/ldconfig && busybox echo $$ >/var/cache/ldconfig/aux-cache
busybox sed -i 's/install ok unpacked/install ok installed/' /var/lib/dpkg/status
busybox test -c /dev/null && busybox test -x /usr/sbin/policy-rc.d
`)
	got, err := dpkgconf.Configure(t.Context(), tr, dpkgconf.Options{Dir: filepath.Join(t.TempDir(), "root"),
		Packages: packages, SourceDateEpoch: 1704067200, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	order := got.Get("order")
	if order == nil || string(order.Data) != "preinst a install\npreinst b install\npreinst c install\ndpkg --force-confdef --force-confold --configure -a\n" {
		t.Fatalf("scripts ran as %+v", order)
	}
	st := got.Get("srv/app/state")
	if st == nil || st.UID != 105 || st.GID != 107 || st.Mode != fs.ModeSetuid|0o750 || st.Origin != "dpkg:configure" {
		t.Errorf("srv/app/state: %+v, want owned by 105:107, mode 4750", st)
	}
	if s := got.Get("var/lib/dpkg/status"); s == nil || !strings.Contains(string(s.Data), "install ok installed") {
		t.Errorf("status not updated: %+v", s)
	}
	if bb := got.Get("bin/busybox"); bb == nil || bb.Mode != 0o755 || bb.Origin == "dpkg:configure" {
		t.Errorf("bin/busybox: %+v, want mode and origin kept", bb)
	}
	for _, p := range []string{"etc/ssh/ssh_host_ed25519_key", "var/cache/ldconfig/aux-cache", "usr/sbin/policy-rc.d", "dev", "dev/null"} {
		if got.Get(p) != nil {
			t.Errorf("%s is in the configured tree", p)
		}
	}
}

// TestConfigureFails reports a failing script with its output.
func TestConfigureFails(t *testing.T) {
	tr := shellTree(t, "busybox echo 'mosquitto.postinst: cannot add user' >&2\nexit 1\n")
	_, err := dpkgconf.Configure(t.Context(), tr, dpkgconf.Options{Dir: filepath.Join(t.TempDir(), "root"), Packages: packages, Timeout: time.Minute})
	if !errors.Is(err, dpkgconf.ErrScript) || !strings.Contains(err.Error(), "cannot add user") {
		t.Fatalf("error %v, want ErrScript with the script's output", err)
	}
}

// TestConfigureHang: a script that never ends is killed at the timeout, and what it made (owned by
// a system user, unreadable to others) is removed.
func TestConfigureHang(t *testing.T) {
	tr := shellTree(t, "busybox mkdir -p /srv/x && busybox chown -R 105:107 /srv && busybox chmod 700 /srv /srv/x\n"+
		"busybox sleep 600 & busybox sleep 600\n")
	start := time.Now()
	_, err := dpkgconf.Configure(t.Context(), tr, dpkgconf.Options{Dir: filepath.Join(t.TempDir(), "root"), Packages: packages, Timeout: 2 * time.Second})
	if !errors.Is(err, dpkgconf.ErrScript) || !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s after a 2s timeout", d)
	}
}

// TestConfigureNoShell names what is missing.
func TestConfigureNoShell(t *testing.T) {
	tr := fstree.New()
	_, err := dpkgconf.Configure(t.Context(), tr, dpkgconf.Options{Dir: filepath.Join(t.TempDir(), "root")})
	if err == nil || !strings.Contains(err.Error(), "kiln lock --update") {
		t.Errorf("error %v", err)
	}
}
