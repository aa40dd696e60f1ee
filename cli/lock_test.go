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
