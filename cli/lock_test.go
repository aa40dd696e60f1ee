package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

// kiln lock writes kiln.lock beside the recipe; it keeps it while the archive moves on, and
// --update resolves again and lists what changed. A recipe that names other packages than its
// lock is refused.
func TestLock(t *testing.T) {
	input := func(name string) archivetest.Pkg {
		return archivetest.P(name, "1.0-1").WithDeb(t, []archivetest.File{{Path: "usr/share/" + name + "/data", Data: name}}, nil)
	}
	pkgs := []archivetest.Pkg{
		archivetest.P("libc6", "2.36-9"),
		archivetest.P("hello", "2.10-3", "Depends", "libc6 (>= 2.34)"),
		input("kernel-test"), input("busybox-test"), input("boot-test"),
	}
	ta := archivetest.New(t, pkgs, nil)
	t.Setenv("KILN_CACHE", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	file := filepath.Join(dir, "kiln.toml")
	write := func(packages string) {
		src := "kiln = 1\nname = \"garden\"\nversion = \"1.0.0\"\n[kernel]\npackage = \"kernel-test\"\n[board]\nbootloader = \"boot-test\"\n" +
			"[system]\nbusybox = \"busybox-test\"\npackages = [" + packages + "]\n" +
			"[archive]\nmirrors = [\"" + ta.URL + "\"]\nsuites = [\"stable\"]\nkeyring = \"" + ta.Keyring + "\"\n"
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lockFile := filepath.Join(dir, "kiln.lock")
	lock := func(args ...string) (int, string, string) {
		env, stdout, stderr := packagesEnv()
		code := run(ctx, env, append([]string{"lock", "--recipe", file}, args...))
		return code, stdout.String(), stderr.String()
	}
	version := func(name string) string {
		l, err := archive.ReadLockFile(lockFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l.Packages {
			if p.Name == name {
				return p.Version
			}
		}
		return ""
	}

	write(`"hello"`)
	if code, out, errs := lock(); code != 0 || !strings.Contains(out, "5 packages") {
		t.Fatalf("kiln lock: exit %d, %q %q", code, out, errs)
	}
	if v := version("hello"); v != "2.10-3" {
		t.Fatalf("locked hello %q", v)
	}

	// The archive moves on: the lock holds.
	ta.Publish(append(pkgs, archivetest.P("hello", "2.10-4", "Depends", "libc6 (>= 2.34)")), nil)
	if code, out, errs := lock(); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("kiln lock with a lock: exit %d, %q %q", code, out, errs)
	}
	if v := version("hello"); v != "2.10-3" {
		t.Errorf("lock changed to hello %q without --update", v)
	}
	if code, out, errs := lock("--update"); code != 0 || !strings.Contains(out, "1 changed") || !strings.Contains(out, "hello 2.10-3 → 2.10-4") {
		t.Fatalf("kiln lock --update: exit %d, %q %q", code, out, errs)
	}
	if v := version("hello"); v != "2.10-4" {
		t.Errorf("after --update hello is %q", v)
	}

	write(`"hello", "libc6"`)
	if code, _, errs := lock(); code != 1 || !strings.Contains(errs, "package libc6 added") || !strings.Contains(errs, "kiln lock --update") {
		t.Errorf("kiln lock with a stale lock: exit %d, %q", code, errs)
	}
}

// kiln packages download writes packages under apt-get download's names, a metapackage with the
// package it stands for, from a cold and then a warm cache.
func TestPackagesDownload(t *testing.T) {
	real := archivetest.P("kernel-1-test", "1:1.0-1").WithDeb(t, []archivetest.File{{Path: "boot/vmlinuz-1", Data: "kernel"}}, nil)
	meta := archivetest.P("kernel-test", "1.0", "Depends", "kernel-1-test (= 1:1.0-1)").WithDeb(t,
		[]archivetest.File{{Path: "usr/share/doc/kernel-test/copyright", Data: "c"}}, nil)
	ta := archivetest.New(t, []archivetest.Pkg{real, meta, archivetest.P("other", "1")}, nil)
	t.Setenv("KILN_CACHE", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, warm := range []bool{false, true} {
		env, stdout, stderr := packagesEnv()
		code := run(ctx, env, []string{"packages", "download", "--dir", dir, "--mirror", ta.URL, "--suite", "stable", "--keyring", ta.Keyring, "kernel-test"})
		if code != 0 {
			t.Fatalf("download (warm %v): exit %d, %s", warm, code, stderr)
		}
		for _, f := range []string{"kernel-test_1.0_amd64.deb", "kernel-1-test_1%3a1.0-1_amd64.deb"} {
			if !strings.Contains(stdout.String(), f) {
				t.Errorf("output %q lacks %s", stdout, f)
			}
		}
		got, err := os.ReadFile(filepath.Join(dir, "kernel-1-test_1%3a1.0-1_amd64.deb"))
		if err != nil || string(got) != string(real.Deb()) {
			t.Errorf("downloaded kernel package differs from the archive's: %v", err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files in the directory, want the two packages", len(entries))
	}
}
