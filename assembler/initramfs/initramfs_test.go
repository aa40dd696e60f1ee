package initramfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const testHash = "$6$kilnsalt$.F8B95K3KBldC4QSIq442xI.pNjDFjjLJvBiPyna08gHU/FcNSJCkBHFL.ZYA3r8iMguHYJ/9P1If2xf6JtPd." // openssl passwd -6 -salt kilnsalt kiln-secret

const testPassword = "kiln-secret"

func fullSpec(t *testing.T) Spec {
	return Spec{
		Name: "kiln-tiny", Version: "1.2.3", Hostname: "kiln-test", Timezone: "Europe/Berlin",
		Busybox: busybox(t),
		Agent:   File{Data: []byte("#!/bin/sh\necho agent\n"), Origin: "kiln-agent test"},
		Users: []User{{Name: "alice", UID: -1, PasswordHash: testHash, SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK alice@laptop"}},
			{Name: "bob", UID: -1}},
		WiFi:        &WiFi{SSID: "home", PSK: "correct horse battery", Country: "DE"},
		OSRelease:   []byte("ID=kiln\nNAME=\"Kiln Tiny\"\n"),
		Release:     []byte(`{"name":"kiln-tiny","version":"1.2.3"}`),
		TrustedRoot: []byte(`{"signed":{}}`),
		Extra: []File{{Path: "/etc/motd", Data: []byte("hello\n"), Origin: "recipe:files[0]"},
			{Path: "/opt/app/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")}},
		SourceDateEpoch: 1700000000,
	}
}

// unpack decompresses with the zstd/gzip tools and unpacks with GNU cpio, returning the directory
// and the `cpio -tv` listing.
func unpack(t *testing.T, r *Result) (string, string) {
	t.Helper()
	var dec *exec.Cmd
	switch r.Compression {
	case Zstd:
		dec = exec.Command(needTool(t, "zstd"), "-dc")
	case Gzip:
		dec = exec.Command(needTool(t, "gzip"), "-dc")
	default:
		dec = exec.Command("cat")
	}
	dec.Stdin = bytes.NewReader(r.Data)
	raw, err := dec.Output()
	if err != nil {
		t.Fatalf("%v: %v", dec.Args, err)
	}
	if int64(len(raw)) != r.Size {
		t.Errorf("uncompressed %d bytes, Result.Size %d", len(raw), r.Size)
	}
	cpio := needTool(t, "cpio")
	list := exec.Command(cpio, "-tv", "--quiet", "--numeric-uid-gid")
	list.Stdin = bytes.NewReader(raw)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -tv: %v", err)
	}
	dir := t.TempDir()
	x := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	x.Dir = dir
	x.Stdin = bytes.NewReader(raw)
	if b, err := x.CombinedOutput(); err != nil && os.Geteuid() == 0 {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	return dir, string(out)
}

func listed(t *testing.T, listing, re string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)` + re).MatchString(listing) {
		t.Errorf("cpio -tv has no line matching %s", re)
	}
}

func TestBuildContents(t *testing.T) {
	s := fullSpec(t)
	r, err := Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	dir, ls := unpack(t, r)
	listed(t, ls, `^lrwxrwxrwx\s+1 0\s+0\s+\d+ .* init -> bin/busybox$`)
	listed(t, ls, `^crw-------\s+1 0\s+0\s+5,\s+1 .* dev/console$`)
	listed(t, ls, `^crw-rw-rw-\s+1 0\s+0\s+1,\s+3 .* dev/null$`)
	listed(t, ls, `^-rw-------\s+1 0\s+0\s+\d+ .* etc/shadow$`)
	listed(t, ls, `^drwx------\s+\d+ 1000\s+1000\s+0 .* home/alice/.ssh$`)
	listed(t, ls, `^-rw-------\s+1 1000\s+1000\s+\d+ .* home/alice/.ssh/authorized_keys$`)
	listed(t, ls, `^-rw-------\s+1 0\s+0\s+\d+ .* etc/wpa_supplicant/wpa_supplicant.conf$`)
	listed(t, ls, `^-rwxr-xr-x\s+1 0\s+0\s+\d+ .* usr/bin/kiln-agent$`)
	listed(t, ls, `^lrwxrwxrwx .* sbin/getty -> ../bin/busybox$`)
	listed(t, ls, `^lrwxrwxrwx .* usr/sbin/chroot -> ../../bin/busybox$`)
	listed(t, ls, `^drwxrwxrwt .* tmp$`)

	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	if got := read("etc/hostname"); got != "kiln-test\n" {
		t.Errorf("hostname %q", got)
	}
	for _, want := range []string{"root:*:19675:", "alice:" + testHash + ":19675:", "bob:*:"} {
		if !strings.Contains(read("etc/shadow"), want) {
			t.Errorf("shadow lacks %q:\n%s", want, read("etc/shadow"))
		}
	}
	for _, want := range []string{"root:x:0:0:root:/root:/bin/sh", "alice:x:1000:1000:alice:/home/alice:/bin/sh", "bob:x:1001:1001:"} {
		if !strings.Contains(read("etc/passwd"), want) {
			t.Errorf("passwd lacks %q", want)
		}
	}
	if !strings.Contains(read("etc/group"), "alice:x:1000:") {
		t.Errorf("group lacks alice")
	}
	if read("etc/TZ") != "CET-1CEST,M3.5.0,M10.5.0/3\n" || !strings.HasPrefix(read("etc/localtime"), "TZif") {
		t.Errorf("timezone: TZ %q", read("etc/TZ"))
	}
	wpa := read("etc/wpa_supplicant/wpa_supplicant.conf")
	// PBKDF2-SHA1("correct horse battery", "home", 4096, 32), as wpa_passphrase computes it.
	if strings.Contains(wpa, "correct horse") || !strings.Contains(wpa, "ssid=686f6d65") || !strings.Contains(wpa, "country=DE") ||
		!regexp.MustCompile(`psk=[0-9a-f]{64}\n`).MatchString(wpa) {
		t.Errorf("wpa_supplicant.conf:\n%s", wpa)
	}
	if p, err := exec.LookPath("wpa_passphrase"); err == nil {
		out, _ := exec.Command(p, "home", "correct horse battery").Output()
		want := regexp.MustCompile(`\tpsk=([0-9a-f]{64})`).FindStringSubmatch(string(out))
		if want == nil || !strings.Contains(wpa, "psk="+want[1]) {
			t.Errorf("PSK differs from wpa_passphrase's %q", out)
		}
	}
	boot := read("etc/kiln/boot.conf")
	if !strings.Contains(boot, "KILN_NAME='kiln-tiny'") || !strings.Contains(boot, "KILN_VERSION='1.2.3'") {
		t.Errorf("boot.conf:\n%s", boot)
	}
	for p, want := range map[string]string{"etc/motd": "hello\n", "etc/kiln/root.json": `{"signed":{}}`, "etc/os-release": "ID=kiln\nNAME=\"Kiln Tiny\"\n"} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "opt/app/run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("overlay file: %v %v", fi, err)
	}
	// The shell scripts are valid POSIX sh for busybox ash.
	bb := writeTemp(t, s.Busybox.Data, 0o755)
	for _, sc := range []string{"etc/init.d/rcS", "etc/init.d/rcK", "etc/init.d/kiln-agent", "etc/udhcpc/default.script"} {
		if out, err := exec.Command(bb, "sh", "-n", filepath.Join(dir, sc)).CombinedOutput(); err != nil {
			t.Errorf("busybox sh -n %s: %v %s", sc, err, out)
		}
	}
	// Every file is in Result.Files, parents first.
	seen := map[string]bool{"": true}
	for _, f := range r.Files {
		if !seen[filepath.Dir(f.Path)] && filepath.Dir(f.Path) != "." {
			t.Errorf("%s comes before its directory", f.Path)
		}
		seen[f.Path] = true
		if f.Origin == "" {
			t.Errorf("%s has no origin", f.Path)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for _, c := range []Compression{Zstd, Gzip, None} {
		s := fullSpec(t)
		s.Compression = c
		a, err := Build(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Build(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Data, b.Data) {
			t.Errorf("%s: two builds differ", c)
		}
		unpack(t, a) // the standard tools read every compression
	}
}

func TestBadSettings(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Spec)
		msg  string
	}{
		{"hostname", func(s *Spec) { s.Hostname = "bad_host!" }, `hostname "bad_host!"`},
		{"user name", func(s *Spec) { s.Users = []User{{Name: "Alice", UID: -1}} }, `user name "Alice"`},
		{"yescrypt", func(s *Spec) { s.Users = []User{{Name: "a", UID: -1, PasswordHash: "$y$j9T$abc$def"}} }, "yescrypt"},
		{"not a hash", func(s *Spec) { s.Users = []User{{Name: "a", UID: -1, PasswordHash: "secret"}} }, "not a crypt(3) hash"},
		{"uid taken", func(s *Spec) { s.Users = []User{{Name: "a", UID: 0}} }, "uid 0 is taken by root"},
		{"twice", func(s *Spec) { s.Users = []User{{Name: "a", UID: -1}, {Name: "a", UID: -1}} }, "listed twice"},
		{"key lines", func(s *Spec) { s.Users = []User{{Name: "a", UID: -1, SSHKeys: []string{"a\nb"}}} }, "one key per entry"},
		{"short psk", func(s *Spec) { s.WiFi = &WiFi{SSID: "x", PSK: "short"} }, "8 to 63"},
		{"country", func(s *Spec) { s.WiFi = &WiFi{SSID: "x", PSK: "longenough", Country: "Germany"} }, "ISO 3166"},
		{"timezone", func(s *Spec) { s.Timezone = "Mars/Olympus" }, `timezone "Mars/Olympus"`},
		{"module release", func(s *Spec) { s.Kernel = Modules{Load: []string{"x"}} }, "kernel release"},
		{"overlay over dir", func(s *Spec) { s.Extra = []File{{Path: "etc", Data: []byte("x")}} }, "directory is in the way"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := fullSpec(t)
			c.edit(&s)
			_, err := Build(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %v, want one containing %q", err, c.msg)
			}
			if strings.Contains(err.Error(), "correct horse") {
				t.Fatal("error leaks the Wi-Fi passphrase")
			}
		})
	}
	if _, err := Build(context.Background(), Spec{}); !errors.Is(err, ErrNoBusybox) {
		t.Errorf("no busybox: %v", err)
	}
}

func TestPOSIXTimezone(t *testing.T) {
	s := fullSpec(t)
	s.Timezone = "EST5EDT,M3.2.0,M11.1.0"
	r, err := Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Files {
		if f.Path == "etc/TZ" && string(f.Data) != "EST5EDT,M3.2.0,M11.1.0\n" {
			t.Errorf("TZ %q", f.Data)
		}
		if f.Path == "etc/localtime" {
			t.Error("localtime written for a POSIX TZ string")
		}
	}
}

func TestModulesDep(t *testing.T) {
	k := kernel(t)
	dep, err := modulesDep(k.modules.Files)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(dep)), "\n") {
		m, deps, _ := strings.Cut(l, ":")
		lines[moduleName(m)] = strings.TrimSpace(deps)
	}
	// vfat needs fat; every line lists a module before the modules it needs itself, so that
	// modprobe, loading from the end, never loads a module before its dependencies.
	if !strings.HasSuffix(lines["vfat"], "kernel/fs/fat/fat.ko") {
		t.Errorf("vfat: %q", lines["vfat"])
	}
	if !strings.Contains(lines["virtio_blk"], "virtio_ring.ko") {
		t.Errorf("virtio_blk: %q", lines["virtio_blk"])
	}
	for m, deps := range lines {
		list := strings.Fields(deps)
		for i, d := range list {
			for _, dd := range strings.Fields(lines[moduleName(d)]) {
				for j := 0; j < i; j++ {
					if list[j] == dd {
						t.Errorf("%s: %s is listed before %s, which needs it", m, dd, d)
					}
				}
			}
		}
	}
	// Compare with depmod's own answer when kmod is installed.
	if depmod, err := exec.LookPath("depmod"); err == nil {
		root := t.TempDir()
		base := filepath.Join(root, "lib/modules", k.modules.Release)
		for _, f := range k.modules.Files {
			p := filepath.Join(base, f.Path)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, f.Data, 0o644)
		}
		if out, err := exec.Command(depmod, "-b", root, k.modules.Release).CombinedOutput(); err != nil {
			t.Fatalf("depmod: %v %s", err, out)
		}
		ref, _ := os.ReadFile(filepath.Join(base, "modules.dep"))
		refLines := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(ref)), "\n") {
			m, deps, _ := strings.Cut(l, ":")
			refLines[m] = strings.TrimSpace(deps)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(dep)), "\n") {
			m, deps, _ := strings.Cut(l, ":")
			if got, want := set(deps), set(refLines[m]); got != want {
				t.Errorf("%s: deps %s, depmod says %s", m, got, want)
			}
		}
	}
}

func set(s string) string {
	f := strings.Fields(s)
	m := map[string]bool{}
	for _, x := range f {
		m[x] = true
	}
	out := make([]string, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	sortStrings(out)
	return strings.Join(out, " ")
}

// TestConsoleShell checks both console modes in the built /etc/inittab: gettys for a login, root
// shells on the same terminals otherwise.
func TestConsoleShell(t *testing.T) {
	for _, shell := range []bool{false, true} {
		s := fullSpec(t)
		s.ConsoleShell = shell
		r, err := Build(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := unpack(t, r)
		b, err := os.ReadFile(filepath.Join(dir, "etc/inittab"))
		if err != nil {
			t.Fatal(err)
		}
		tab := string(b)
		for _, tty := range []string{"ttyS0", "tty1"} {
			hasShell := strings.Contains(tab, "\n"+tty+"::respawn:-/bin/sh")
			hasGetty := regexp.MustCompile(`(?m)^` + tty + `::respawn:/sbin/getty `).MatchString(tab)
			if hasShell != shell || hasGetty == shell {
				t.Errorf("ConsoleShell=%v: %s shell=%v getty=%v\n%s", shell, tty, hasShell, hasGetty, tab)
			}
		}
		if !strings.Contains(tab, "::sysinit:/etc/init.d/rcS") {
			t.Errorf("ConsoleShell=%v lost the sysinit line:\n%s", shell, tab)
		}
	}
}
