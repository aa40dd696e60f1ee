package assembler_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/archive/archivetest"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
)

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
	m := loadManifest(t, res)
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

// testPackages are two real (small) packages: a program and the library it depends on, with a
// machine-readable copyright file, md5sums and a maintainer script.
func testPackages(t *testing.T, version, greeting string) []archivetest.Pkg {
	copyright := "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: greet\n\n" +
		"Files: *\nCopyright: 2024 Kiln\nLicense: GPL-2+\n This program is free software.\n\n" +
		"Files: lib/*\nCopyright: 2024 Kiln\nLicense: MIT\n Permission is hereby granted.\n"
	return []archivetest.Pkg{
		archivetest.P("greet", version, "Depends", "libgreet1 (>= 1.0)", "Source", "greet-src").WithDeb(t, []archivetest.File{
			{Path: "usr/"}, {Path: "usr/bin/"},
			{Path: "usr/bin/greet", Mode: 0o755, Data: "#!/bin/sh\necho \"" + greeting + "\"\n"},
			{Path: "usr/share/doc/greet/copyright", Data: copyright},
		}, map[string]string{"postinst": "#!/bin/sh\nset -e\nadduser --system greet\n"}),
		archivetest.P("libgreet1", "1.0-1", "Multi-Arch", "same").WithDeb(t, []archivetest.File{
			{Path: "usr/lib/x86_64-linux-gnu/libgreet.so.1", Data: "library"},
			{Path: "usr/share/doc/libgreet1/copyright", Data: "Copyright 2024 Kiln. Any use permitted.\n"},
		}, nil),
		archivetest.P("unrelated", "1.0-1"),
	}
}

// TestBuildInstallsPackages builds an image with a package and checks what a user of dpkg,
// the manifest and the SBOM sees; the lockfile then keeps the image byte-identical while the
// archive publishes a new version, until kiln lock --update takes it.
func TestBuildInstallsPackages(t *testing.T) {
	a, inputs := inputArchive(t, testPackages(t, "1.0-1", "hello from a package")...)
	dir := t.TempDir()
	r := archiveRecipe(t, dir, a.URL, a.Keyring, "[system]\npackages = [\"greet\"]\n")
	opts := testimage.Options(t)
	opts.Cache = t.TempDir()
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Root == "" {
		t.Fatal("a package image without a root filesystem")
	}
	root := unpackRoot(t, res.Root)
	if b, err := os.ReadFile(filepath.Join(root, "usr/bin/greet")); err != nil || !strings.Contains(string(b), "hello from a package") {
		t.Errorf("usr/bin/greet: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/bin/greet")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("usr/bin/greet mode: %v", err)
	}

	// dpkg's database lists the closure, each installed.
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = archive.ParseDeb822(bytes.NewReader(status), archive.DefaultLimits, func(p archive.Paragraph) error {
		name, _ := p.Get("Package")
		st, _ := p.Get("Status")
		ver, _ := p.Get("Version")
		if st != "install ok installed" || ver == "" {
			t.Errorf("status of %s: %q, version %q", name, st, ver)
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatalf("status file does not parse: %v", err)
	}
	if got := strings.Join(names, " "); got != "greet libgreet1" {
		t.Errorf("status lists %q, want greet libgreet1", got)
	}
	for file, want := range map[string]string{
		"greet.list":              "/.\n/usr\n/usr/bin\n/usr/bin/greet\n",
		"greet.md5sums":           "  usr/bin/greet\n",
		"greet.postinst":          "adduser --system greet",
		"libgreet1:amd64.list":    "/usr/lib/x86_64-linux-gnu/libgreet.so.1\n",
		"libgreet1:amd64.md5sums": "usr/lib/x86_64-linux-gnu/libgreet.so.1",
	} {
		b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/info", file))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("var/lib/dpkg/info/%s: %q (%v), want it to contain %q", file, b, err, want)
		}
	}

	m := loadManifest(t, res)
	if len(m.Packages) != 2 || m.Packages[0].Name != "greet" || m.Packages[0].Source != "greet-src" ||
		strings.Join(m.Packages[0].Licenses, ",") != "GPL-2+,MIT" || strings.Join(m.Packages[1].Licenses, ",") != "unknown" {
		t.Errorf("manifest packages %+v", m.Packages)
	}
	for _, p := range m.Packages {
		for _, ap := range inputs {
			if ap.Name == p.Name && sha256Hex(ap.Deb()) != p.SHA256 {
				t.Errorf("manifest sha256 of %s is %s, the archive's %s", p.Name, p.SHA256, sha256Hex(ap.Deb()))
			}
		}
	}
	f, err := os.Open(res.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(f, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("SBOM: %v", err)
	}
	comps := map[string]cdx.Component{}
	for _, c := range *bom.Components {
		comps[c.Name] = c
	}
	if c, ok := comps["greet"]; bom.SpecVersion != cdx.SpecVersion1_5 || !ok || c.Version != "1.0-1" || c.PackageURL != "pkg:deb/debian/greet@1.0-1?arch=amd64" ||
		(*c.Hashes)[0].Value != m.Packages[0].SHA256 || (*c.Licenses)[0].License.Name != "GPL-2+" {
		t.Errorf("SBOM: spec %s, greet %+v", bom.SpecVersion, comps["greet"])
	}
	if _, ok := comps["busybox-static"]; !ok {
		t.Errorf("SBOM lacks the busybox input")
	}

	// The archive moves on; a build from the lock is byte-identical: with the root image from
	// the cache, and with the cached root image damaged (it is checked and written again).
	a.Publish(append(inputs, testPackages(t, "1.0-2", "a newer greeting")[0]), nil)
	cachedRoots, _ := filepath.Glob(filepath.Join(opts.Cache, "roots", "*.erofs"))
	if len(cachedRoots) != 1 {
		t.Fatalf("cached root images after one build: %q", cachedRoots)
	}
	for _, damage := range []bool{false, true} {
		if damage {
			f, err := os.OpenFile(cachedRoots[0], os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("damaged"), 4096)
			f.Close()
		}
		opts.OutDir = filepath.Join(t.TempDir(), "out")
		res2, err := assembler.Build(t.Context(), r, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res2.ImageSHA256 != res.ImageSHA256 {
			t.Errorf("rebuild from the lock (cached root damaged: %v): image %s, first %s", damage, res2.ImageSHA256, res.ImageSHA256)
		}
		m1, _ := os.ReadFile(res.Manifest)
		m2, _ := os.ReadFile(res2.Manifest)
		if !bytes.Equal(m1, m2) {
			t.Errorf("rebuild from the lock (cached root damaged: %v) wrote a different manifest", damage)
		}
		r1, _ := os.ReadFile(res.Root)
		if c, err := os.ReadFile(cachedRoots[0]); err != nil || !bytes.Equal(c, r1) {
			t.Errorf("cached root image (damaged: %v) differs from the built one: %v", damage, err)
		}
	}
	// kiln lock --update takes the new version.
	l, err := assembler.ResolveLock(t.Context(), r, assembler.LockOptions{Cache: opts.Cache})
	if err != nil {
		t.Fatal(err)
	}
	if err := assembler.WriteLock(filepath.Join(dir, assembler.LockName), l); err != nil {
		t.Fatal(err)
	}
	// Into the first build's directory: a previous package build (its root image too) is replaced.
	opts.OutDir = filepath.Dir(res.Image)
	res3, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(unpackRoot(t, res3.Root), "usr/bin/greet")); err != nil || !strings.Contains(string(b), "a newer greeting") {
		t.Errorf("after the lock update usr/bin/greet is %q, %v", b, err)
	}
}

// unpackRoot extracts a root filesystem image with erofs-utils' fsck.erofs and returns the
// directory.
func unpackRoot(t *testing.T, file string) string {
	t.Helper()
	fsck := testenv.Tool(t, "fsck.erofs")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "root")
	if out, err := exec.CommandContext(ctx, fsck, "--extract="+dir, file).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs --extract: %v\n%s", err, out)
	}
	return dir
}
