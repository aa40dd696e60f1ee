package assembler_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/archive/archivetest"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/testimage"
)

func readManifest(t *testing.T, file string) *assembler.Manifest {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m assembler.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &m
}

// inputArchive serves the default image's real input packages (from the input cache) as a
// signed test archive, plus extra packages.
func inputArchive(t *testing.T, extra ...archivetest.Pkg) (*archivetest.Archive, []archivetest.Pkg) {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(testimage.Cache(t), "debs", "*.deb"))
	var pkgs []archivetest.Pkg
	for _, f := range debs {
		p, err := deb.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.Name, "linux-image-") && p.Name != "busybox-static" && p.Name != "systemd-boot-efi" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ap := archivetest.P(p.Name, p.Version, "Architecture", p.Arch)
		if d := p.Control["Depends"]; d != "" {
			ap.Fields["Depends"] = d
		}
		ap.Data = data
		pkgs = append(pkgs, ap)
	}
	pkgs = append(pkgs, extra...)
	return archivetest.New(t, pkgs, nil), pkgs
}

// archiveRecipe writes a recipe using the archive at mirror into dir and loads it.
func archiveRecipe(t *testing.T, dir, mirror, keyring, body string) *recipe.Recipe {
	t.Helper()
	src := "kiln = 1\nname = \"fetch\"\nversion = \"1.0.0\"\n" + body +
		"[archive]\nmirrors = [\"" + mirror + "\"]\nsuites = [\"stable\"]\nkeyring = \"" + keyring + "\"\n"
	file := filepath.Join(dir, "kiln.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBuildFetchesItsInputs builds from an empty cache: Kiln resolves the kernel (through the
// linux-image-amd64 metapackage), busybox and systemd-boot in the recipe's archive, downloads
// them and writes kiln.lock; a second build with the archive gone needs no network and gives the
// same image.
func TestBuildFetchesItsInputs(t *testing.T) {
	a, pkgs := inputArchive(t)
	dir := t.TempDir()
	r := archiveRecipe(t, dir, a.URL, a.Keyring, "")
	opts := testimage.Options(t)
	opts.Cache = t.TempDir() // nothing in debs/: everything comes from the archive
	var phases []string
	opts.Progress = func(e progress.Event) {
		if len(phases) == 0 || phases[len(phases)-1] != e.Phase {
			phases = append(phases, e.Phase)
		}
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(phases, " "), "download") {
		t.Errorf("no download progress reported (phases %q)", phases)
	}
	lock, err := archive.ReadLockFile(filepath.Join(dir, assembler.LockName))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lock.Inputs, " "); got != "busybox-static linux-image-amd64 systemd-boot-efi" {
		t.Errorf("locked inputs %q", got)
	}
	if len(lock.Packages) != len(pkgs) {
		t.Errorf("lock has %d packages, want the %d input packages (metapackage and kernel)", len(lock.Packages), len(pkgs))
	}
	for _, p := range lock.Packages {
		if !p.Input {
			t.Errorf("%s is not marked as a build input", p.Name)
		}
		if got := testimage.SHA256(t, filepath.Join(opts.Cache, "sha256", p.SHA256)); got != p.SHA256 {
			t.Errorf("cached %s has sha256 %s, lock says %s", p.Name, got, p.SHA256)
		}
	}
	m := readManifest(t, res.Manifest)
	var kernel *assembler.Input
	for i, in := range m.Inputs {
		if in.Role == "kernel" {
			kernel = &m.Inputs[i]
		}
	}
	if kernel == nil || !strings.HasPrefix(kernel.Package, "linux-image-6.") || !strings.HasPrefix(kernel.Via, "linux-image-amd64 ") ||
		!strings.HasSuffix(kernel.Path, "_amd64.deb") {
		t.Errorf("manifest kernel input %+v", kernel)
	}

	// Warm cache, mirror unreachable: the build needs no network.
	a.Close()
	r = archiveRecipe(t, dir, "http://127.0.0.1:1/debian", a.Keyring, "")
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res2, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatalf("warm rebuild with the mirror unreachable: %v", err)
	}
	if res2.ImageSHA256 != res.ImageSHA256 {
		t.Errorf("warm rebuild gave image %s, first build %s", res2.ImageSHA256, res.ImageSHA256)
	}

	// A recipe that now asks for a package the lock does not have is refused.
	r = archiveRecipe(t, dir, "http://127.0.0.1:1/debian", a.Keyring, "[system]\npackages = [\"hello\"]\n")
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	_, err = assembler.Build(t.Context(), r, opts)
	if !errors.Is(err, assembler.ErrLockMismatch) || !strings.Contains(err.Error(), "package hello added") ||
		!strings.Contains(err.Error(), "kiln lock --update") {
		t.Errorf("build with a stale lock: %v", err)
	}
}
