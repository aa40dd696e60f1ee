package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

func packagesEnv() (*Env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	log := logrus.New()
	log.SetOutput(&stderr)
	return &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""), Log: log}, &stdout, &stderr
}

// kiln packages resolve writes the lock of the resolved set; kiln packages fetch downloads it
// into the content-addressed cache, and again with the mirror gone from a warm cache.
func TestPackagesResolveLockFetch(t *testing.T) {
	ta := archivetest.New(t, []archivetest.Pkg{
		archivetest.P("libc6", "2.36-9"),
		archivetest.P("hello", "2.10-3", "Depends", "libc6 (>= 2.34)"),
		archivetest.P("mosquitto", "2.0.11-1", "Depends", "libssl3 (>= 3.0.9)"),
		archivetest.P("libssl3", "3.0.8-1"),
	}, nil)
	t.Setenv("KILN_CACHE", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock := filepath.Join(t.TempDir(), "kiln.lock")
	src := []string{"--mirror", ta.URL, "--suite", "stable", "--keyring", ta.Keyring}

	env, stdout, stderr := packagesEnv()
	if code := run(ctx, env, append(append([]string{"packages", "resolve", "--lock", lock}, src...), "hello")); code != 0 {
		t.Fatalf("resolve exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "hello") || !strings.Contains(stdout.String(), "2 packages") {
		t.Errorf("resolve printed %q", stdout)
	}
	l, err := archive.ReadLockFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Packages) != 2 || l.Packages[0].Name != "hello" || l.Packages[1].Name != "libc6" {
		t.Fatalf("lock holds %+v", l.Packages)
	}

	env, _, stderr = packagesEnv()
	if code := run(ctx, env, append(append([]string{"packages", "resolve"}, src...), "mosquitto")); code != 1 ||
		!strings.Contains(stderr.String(), "mosquitto → libssl3 (>= 3.0.9): stable has 3.0.8-1") {
		t.Errorf("unsatisfiable resolve: exit %d, %q", code, stderr)
	}

	for _, mirrorUp := range []bool{true, false} {
		if !mirrorUp {
			ta.Close()
		}
		env, _, stderr = packagesEnv()
		if code := run(ctx, env, append([]string{"packages", "fetch", "--lock", lock}, src...)); code != 0 {
			t.Fatalf("fetch (mirror up: %v) exit %d: %s", mirrorUp, code, stderr)
		}
		for _, p := range l.Packages {
			if _, err := os.Stat(filepath.Join(os.Getenv("KILN_CACHE"), "sha256", p.SHA256)); err != nil {
				t.Errorf("%s not in the cache: %v", p.Name, err)
			}
		}
	}

}
