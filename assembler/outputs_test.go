package assembler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/ota"
)

// TestReproducible builds the default image a second time into another directory: every output
// file is byte-identical.
func TestReproducible(t *testing.T) {
	first := defaultImage(t)
	opts := testimage.Options(t)
	opts.OutDir = filepath.Join(t.TempDir(), "again")
	second, err := assembler.Build(t.Context(), defaultRecipe(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.ImageSHA256 != second.ImageSHA256 {
		t.Errorf("image sha256 differs: %s, then %s", first.ImageSHA256, second.ImageSHA256)
	}
	for _, pair := range [][2]string{
		{first.Image, second.Image}, {first.Manifest, second.Manifest}, {first.Bmap, second.Bmap}, {first.UKI, second.UKI},
		{filepath.Join(first.UpdateDir, ota.BundleFile), filepath.Join(second.UpdateDir, ota.BundleFile)},
	} {
		out, err := exec.Command("cmp", pair[0], pair[1]).CombinedOutput()
		if err != nil {
			t.Errorf("cmp %s %s: %v %s", pair[0], pair[1], err, out)
		}
	}
}

// TestBmaptoolCopy writes the image with bmaptool and Kiln's block map (bmaptool verifies every
// range's sha256) and compares the copy with the image.
func TestBmaptoolCopy(t *testing.T) {
	needTool(t, "bmaptool", "bmap-tools")
	res := defaultImage(t)
	m, err := bmap.Load(res.Bmap)
	if err != nil {
		t.Fatal(err)
	}
	if m.BlockSize != assembler.BlockSize || m.ImageSize != res.ImageSize || m.MappedBytes() != res.MappedBytes {
		t.Errorf("block map: block size %d, image size %d, mapped %d; result says size %d, mapped %d",
			m.BlockSize, m.ImageSize, m.MappedBytes(), res.ImageSize, res.MappedBytes)
	}
	if res.MappedBytes > res.ImageSize/4 {
		t.Errorf("%d of %d bytes mapped: the image is not sparse", res.MappedBytes, res.ImageSize)
	}
	dst := filepath.Join(t.TempDir(), "copy.img")
	run(t, "bmaptool", "copy", "--bmap", res.Bmap, res.Image, dst)
	run(t, "cmp", res.Image, dst)
}

// TestUpdateBundle checks update/update.json against the recipe and the UKI on the ESP.
func TestUpdateBundle(t *testing.T) {
	res := defaultImage(t)
	m := loadManifest(t, res)
	u, err := ota.LoadBundle(res.UpdateDir)
	if err != nil {
		t.Fatal(err)
	}
	r := defaultRecipe()
	if u.Name != r.Name || u.Version != r.Version || u.Arch != r.Arch || u.Channel != r.Update.Channel ||
		u.MinFrom != r.Update.MinFrom || u.MaxFrom != r.Update.MaxFrom || u.Board != "x86_64-uefi" {
		t.Errorf("update.json %+v does not match the recipe", u)
	}
	if u.Payload.File != "kiln-tiny-1.0.0.efi" || filepath.Join(res.UpdateDir, u.Payload.File) != res.UKI {
		t.Errorf("payload %q, result UKI %s", u.Payload.File, res.UKI)
	}
	data, err := os.ReadFile(res.UKI)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != u.Payload.Size || sha256Hex(data) != u.Payload.SHA256 {
		t.Errorf("payload is %d bytes sha256 %s; update.json says %d %s", len(data), sha256Hex(data), u.Payload.Size, u.Payload.SHA256)
	}
	var onESP string
	for _, f := range m.Files {
		if f.Path == "esp:/EFI/Linux/kiln-tiny-1.0.0.efi" {
			onESP = f.SHA256
		}
	}
	if onESP != u.Payload.SHA256 || m.UKI.SHA256 != u.Payload.SHA256 {
		t.Errorf("the update payload (%s) is not the UKI on the ESP (%s, manifest uki %s)", u.Payload.SHA256, onESP, m.UKI.SHA256)
	}
	entries, _ := os.ReadDir(res.UpdateDir)
	if len(entries) != 2 {
		t.Errorf("update/ holds %d files, want the UKI and update.json", len(entries))
	}
}

// TestManifest checks what the manifest records besides files: recipe, inputs, partitions.
func TestManifest(t *testing.T) {
	res := defaultImage(t)
	m := loadManifest(t, res)
	if m.Recipe.Path != "builtin:kiln.toml" || len(m.Recipe.SHA256) != 64 {
		t.Errorf("recipe %+v", m.Recipe)
	}
	if m.SourceDateEpoch != testimage.SourceDateEpoch || m.Kiln == "" || m.Name != "kiln-tiny" || m.Arch != "x86_64" {
		t.Errorf("header: epoch %d kiln %q name %q arch %q", m.SourceDateEpoch, m.Kiln, m.Name, m.Arch)
	}
	roles := map[string]assembler.Input{}
	for _, in := range m.Inputs {
		roles[in.Role] = in
		if len(in.SHA256) != 64 || in.Size <= 0 {
			t.Errorf("input %+v lacks its checksum or size", in)
		}
	}
	for role, pkg := range map[string]string{"kernel": "linux-image-6.1.0-", "busybox": "busybox-static", "bootloader": "systemd-boot-efi"} {
		in, ok := roles[role]
		if !ok || !strings.HasPrefix(in.Package, pkg) || in.Version == "" {
			t.Errorf("input %s: %+v, want package %s with its version", role, in, pkg)
			continue
		}
		if got := testimage.SHA256(t, filepath.Join(testimage.Cache(t), "debs", in.Path)); got != in.SHA256 {
			t.Errorf("input %s: sha256 %s, the cached .deb has %s", role, in.SHA256, got)
		}
	}
	if _, ok := roles["agent"]; !ok {
		t.Error("the agent is not among the inputs")
	}
	secs := map[string]bool{}
	for _, s := range m.UKI.Sections {
		secs[s.Name] = true
	}
	for _, s := range []string{".linux", ".initrd", ".cmdline", ".osrel", ".uname"} {
		if !secs[s] {
			t.Errorf("manifest lists no UKI section %s", s)
		}
	}
}

// TestCancel cancels builds in each phase: the build returns context.Canceled and leaves nothing
// in the output's parent directory.
func TestCancel(t *testing.T) {
	for _, phase := range []string{assembler.PhaseInputs, assembler.PhaseInitramfs, assembler.PhaseUKI,
		assembler.PhaseDisk, assembler.PhaseHash, assembler.PhaseFinish} {
		t.Run(phase, func(t *testing.T) {
			parent := t.TempDir()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			opts := testimage.Options(t)
			opts.OutDir = filepath.Join(parent, "out")
			opts.Progress = func(e progress.Event) {
				if e.Phase == phase {
					cancel()
				}
			}
			res, err := assembler.Build(ctx, defaultRecipe(), opts)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Build cancelled in phase %s: result %v, error %v; want context.Canceled", phase, res, err)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("a cancelled build left %v behind", left)
			}
		})
	}
}

// TestOutDir: a build replaces a previous build's output but refuses a directory holding other files.
func TestOutDir(t *testing.T) {
	res := defaultImage(t)
	opts := testimage.Options(t)
	opts.OutDir = filepath.Join(t.TempDir(), "mine")
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(opts.OutDir, "thesis.odt")
	if err := os.WriteFile(precious, []byte("years of work"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := assembler.Build(t.Context(), defaultRecipe(), opts)
	if !errors.Is(err, assembler.ErrOutDirInUse) || !strings.Contains(err.Error(), "thesis.odt") {
		t.Fatalf("build into a directory with other files: %v, want ErrOutDirInUse naming the file", err)
	}
	if data, _ := os.ReadFile(precious); string(data) != "years of work" {
		t.Fatal("the build touched a file it did not write")
	}

	// Rebuilding into a previous build's directory replaces it, and removes what a build killed
	// outright (its process gone) left behind.
	opts.OutDir = filepath.Dir(res.Image)
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(filepath.Dir(opts.OutDir), fmt.Sprintf(".%s.build-%d-42", filepath.Base(opts.OutDir), ended.Process.Pid))
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "kiln-tiny.img"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := assembler.Build(t.Context(), defaultRecipe(), opts)
	if err != nil {
		t.Fatalf("rebuild into %s: %v", opts.OutDir, err)
	}
	if again.ImageSHA256 != res.ImageSHA256 {
		t.Errorf("rebuild changed the image")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(opts.OutDir), ".*")); len(left) != 0 {
		t.Errorf("rebuild left %v behind", left)
	}
}

// TestBadInputs: inputs that are missing or wrong fail the build with a message that names them
// and says what to do; nothing is left behind.
func TestBadInputs(t *testing.T) {
	cache := testimage.Cache(t)
	dir := t.TempDir()
	notDeb := filepath.Join(dir, "broken.deb")
	os.WriteFile(notDeb, []byte("not an ar archive"), 0o644)
	for _, tc := range []struct {
		name   string
		recipe string
		opts   func(*assembler.Options)
		want   []string
	}{
		{name: "unknown module", recipe: "kiln = 1\nname = \"m\"\nversion = \"1.0.0\"\n[kernel]\nmodules = [\"virtio_blkk\"]\n",
			want: []string{"unknown kernel module", `"virtio_blkk"`, "virtio_blk"}},
		{name: "package not in the archive", recipe: "kiln = 1\nname = \"p\"\nversion = \"1.0.0\"\n[system]\nbusybox = \"busybox-nonexistent\"\n",
			want: []string{"busybox-nonexistent", "not found in the archive", "[archive]"}},
		{name: "not a deb", recipe: "kiln = 1\nname = \"d\"\nversion = \"1.0.0\"\n[board]\nbootloader = \"" + notDeb + "\"\n",
			want: []string{"board.bootloader", "broken.deb", "not a Debian package"}},
		{name: "wrong package as bootloader", recipe: "kiln = 1\nname = \"b\"\nversion = \"1.0.0\"\n[board]\nbootloader = \"busybox-static\"\n",
			want: []string{"linuxx64.efi.stub", "systemd-boot-efi"}},
		{name: "no agent", opts: func(o *assembler.Options) { o.Agent = filepath.Join(dir, "nope") },
			want: []string{"kiln-agent", "make build"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := defaultRecipe()
			if tc.recipe != "" {
				var err error
				if r, err = recipe.Parse(filepath.Join(dir, "r.toml"), []byte(tc.recipe)); err != nil {
					t.Fatalf("recipe: %v", err)
				}
			}
			opts := testimage.Options(t)
			opts.Cache = cache
			parent := t.TempDir()
			opts.OutDir = filepath.Join(parent, "out")
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := assembler.Build(t.Context(), r, opts)
			if err == nil {
				t.Fatal("build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("a failed build left %v behind", left)
			}
		})
	}
}

// TestKernelCache: a second build takes the kernel and its modules from the kernel cache and gives
// the same image; a damaged cache entry is noticed, ignored and rewritten.
func TestKernelCache(t *testing.T) {
	res := defaultImage(t)
	cache := t.TempDir()
	debs, _ := filepath.Glob(filepath.Join(testimage.Cache(t), "debs", "*.deb"))
	os.Mkdir(filepath.Join(cache, "debs"), 0o755)
	for _, d := range debs {
		if err := os.Symlink(d, filepath.Join(cache, "debs", filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	build := func(name string) *assembler.Result {
		opts := testimage.Options(t)
		opts.Cache = cache
		opts.OutDir = filepath.Join(t.TempDir(), name)
		r, err := assembler.Build(t.Context(), defaultRecipe(), opts)
		if err != nil {
			t.Fatalf("%s build: %v", name, err)
		}
		if r.ImageSHA256 != res.ImageSHA256 {
			t.Errorf("%s build: image sha256 %s, want %s", name, r.ImageSHA256, res.ImageSHA256)
		}
		return r
	}
	build("fresh")
	entries, _ := filepath.Glob(filepath.Join(cache, "kernels", "*", "index.json"))
	if len(entries) != 1 {
		t.Fatalf("kernel cache holds %d entries, want 1", len(entries))
	}
	build("cached")
	// Damage the largest file of the entry (the kernel image).
	dir := filepath.Dir(entries[0])
	files, _ := os.ReadDir(dir)
	var victim string
	var size int64
	for _, f := range files {
		if info, err := f.Info(); err == nil && info.Size() > size && f.Name() != "index.json" {
			victim, size = filepath.Join(dir, f.Name()), info.Size()
		}
	}
	if err := os.WriteFile(victim, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	build("damaged")
	if info, err := os.Stat(victim); err != nil || info.Size() != size {
		t.Errorf("the damaged cache entry was not rewritten")
	}
}
