// Package testimage builds real Kiln images for the tests of other packages (vmrunner, flasher, ota,
// app): the real input packages from the input cache and the real kiln-agent, into t.TempDir().
//
// Without the input packages the test is skipped, or fails when CI=true: run `make inputs` (or
// `make test`, which does it).
package testimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"

	"github.com/kilnproject/kiln/internal/testenv"
)

// SourceDateEpoch is the timestamp of every file in test images.
const SourceDateEpoch = 1704067200

// DefaultReadyLine is what the default image (recipe "Kiln Tiny") prints on its serial console once up.
const DefaultReadyLine = "kiln: ready name=kiln-tiny version=1.0.0 hostname=kiln"

// Build builds an image from recipeTOML ("" = the built-in default recipe "Kiln Tiny") into a
// directory under t.TempDir() and returns its result; a recipe for another arch (such as [board]
// name = "arm64-uefi") takes that arch's inputs (OptionsArch). Relative paths in the recipe (files,
// overlays) are resolved against the test's working directory (the package directory).
func Build(t testing.TB, recipeTOML string) *assembler.Result {
	t.Helper()
	r := parse(t, recipeTOML)
	var opts assembler.Options
	if a := r.DebianArch(); a != "amd64" { // another board's arch: its inputs and agent
		opts = OptionsArch(t, a, r.Kernel.Package, r.System.Busybox, r.Board.Bootloader)
	} else {
		opts = Options(t)
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(context.Background(), r, opts)
	if err != nil {
		t.Fatalf("testimage: build %s: %v", r.Name, err)
	}
	return res
}

// parse parses recipeTOML like Build does ("" = the default recipe).
func parse(t testing.TB, recipeTOML string) *recipe.Recipe {
	t.Helper()
	if recipeTOML == "" {
		return recipe.Default()
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Parse(filepath.Join(wd, "test-recipe.toml"), []byte(recipeTOML))
	if err != nil {
		t.Fatalf("testimage: recipe: %v", err)
	}
	return r
}

// Options returns build options for a test: the input cache, the agent, a fixed SOURCE_DATE_EPOCH
// and a logger that writes through t.Log. OutDir is left for the caller. It skips the test (fails
// under CI=true) when the input packages are missing.
func Options(t testing.TB) assembler.Options {
	t.Helper()
	cache := Cache(t)
	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.SetLevel(logrus.InfoLevel)
	return assembler.Options{Cache: cache, Agent: Agent(t), SourceDateEpoch: SourceDateEpoch, Log: log}
}

// Cache returns the input cache ($KILN_CACHE, else <user cache dir>/kiln) after checking that the
// default recipe's packages are in it.
func Cache(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			Missing(t, "no user cache dir and KILN_CACHE unset")
		}
		cache = filepath.Join(d, "kiln")
	}
	for _, p := range []string{"linux-image-amd64", "busybox-static", "systemd-boot-efi"} {
		if m, _ := filepath.Glob(filepath.Join(cache, "debs", p+"_*.deb")); len(m) == 0 {
			Missing(t, "input package "+p+" not in "+filepath.Join(cache, "debs")+" (run `make inputs`)")
		}
	}
	return cache
}

// Agent returns the kiln-agent binary to put into images: $KILN_AGENT, else one built from
// ./cmd/kiln-agent (static, CGO_ENABLED=0) into t.TempDir().
func Agent(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KILN_AGENT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testimage: KILN_AGENT: %v (run `make build`)", err)
		}
		return p
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	path := filepath.Join(t.TempDir(), "kiln-agent")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", path, "github.com/kilnproject/kiln/cmd/kiln-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testimage: build kiln-agent (or set KILN_AGENT; `make build` writes bin/kiln-agent): %v\n%s", err, out)
	}
	return path
}

// OptionsArch returns Options for an image of another Debian architecture ("arm64"): the input
// packages from Cache/debs-<arch> and the kiln-agent for that arch (built when `make build` has
// not put one beside $KILN_AGENT).
func OptionsArch(t testing.TB, debArch string, inputs ...string) assembler.Options {
	t.Helper()
	opts := Options(t)
	dir := assembler.DebsDir(opts.Cache, debArch)
	for _, p := range inputs {
		if m, _ := filepath.Glob(filepath.Join(dir, p+"_*_"+debArch+".deb")); len(m) == 0 {
			Missing(t, "input package "+p+" ("+debArch+") not in "+dir+" (run `make inputs`)")
		}
	}
	if assembler.AgentFor(opts.Agent, debArch) != opts.Agent {
		return opts
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	agent := filepath.Join(t.TempDir(), "kiln-agent")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", agent+"-"+debArch, "github.com/kilnproject/kiln/cmd/kiln-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+debArch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testimage: build kiln-agent for %s (`make build` writes bin/kiln-agent-%s): %v\n%s", debArch, debArch, err, out)
	}
	opts.Agent = agent
	return opts
}

// Missing skips the test with reason, or fails it when CI=true (CI must provide what tests need).
func Missing(t testing.TB, reason string) {
	t.Helper()
	testenv.Missing(t, "%v", reason)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// SHA256 returns the hex sha256 of the file at path, e.g. to prove an image was not modified.
func SHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
