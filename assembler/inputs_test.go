package assembler_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/testarchive"
	"github.com/kilnproject/kiln/internal/testimage"
)

// writeRecipe writes src as dir/kiln.toml and loads it.
func writeRecipe(t *testing.T, dir, src string) *recipe.Recipe {
	t.Helper()
	p := filepath.Join(dir, "kiln.toml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatalf("recipe: %v", err)
	}
	return r
}

// buildFails builds r into a fresh directory, expects an error containing each of want, and
// checks that the failed build left nothing behind (no hidden staging directory).
func buildFails(t *testing.T, r *recipe.Recipe, want ...string) error {
	t.Helper()
	opts := testimage.Options(t)
	parent := t.TempDir()
	opts.OutDir = filepath.Join(parent, "out")
	_, err := assembler.Build(t.Context(), r, opts)
	if err == nil {
		t.Fatal("build succeeded")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("the failed build left %v behind", left)
	}
	return err
}

// A device named as a file's source (/dev/zero) is refused with the recipe line that names it,
// whether the recipe was validated with the device in place or it changed afterwards.
func TestSourceNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kiln.toml")
	src := "kiln = 1\nname = \"z\"\nversion = \"1.0.0\"\n[[system.files]]\npath = \"/etc/motd\"\nsource = \"%s\"\n"
	if err := os.WriteFile(path, []byte(strings.Replace(src, "%s", "/dev/zero", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := recipe.Load(path); err == nil || !strings.Contains(err.Error(), path+":6: system.files[0].source") ||
		!strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load with source = /dev/zero: %v", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := writeRecipe(t, dir, strings.Replace(src, "%s", "motd", 1))
	r.System.Files[0].Source = "/dev/zero" // as after an edit in the app, or a file swapped since
	err := buildFails(t, r, path+":6: system.files[0].source", "/dev/zero", "character device", "not a regular file")
	if !errors.Is(err, fstree.ErrType) {
		t.Errorf("error does not wrap fstree.ErrType: %v", err)
	}
}

// A 1.5 MB .tar.gz overlay holding a 1.5 GiB file is refused from
// its header: the build fails naming the recipe line and the entry, without reading it into
// memory, and leaves nothing behind.
func TestTarballBombRefused(t *testing.T) {
	dir := t.TempDir()
	testarchive.TarGzBomb(t, filepath.Join(dir, "bomb.tar.gz"), "var/big", 3<<29)
	if fi, err := os.Stat(filepath.Join(dir, "bomb.tar.gz")); err != nil || fi.Size() > 2<<20 {
		t.Fatalf("the bomb should be about 1.5 MB: %v, %v", fi, err)
	}
	r := writeRecipe(t, dir, "kiln = 1\nname = \"bomb\"\nversion = \"1.0.0\"\n[system]\noverlays = [\"bomb.tar.gz\"]\n")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := buildFails(t, r, filepath.Join(dir, "kiln.toml")+":5: system.overlays[0]", "var/big", "more than the")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, fstree.ErrTooLarge) {
		t.Errorf("error does not wrap fstree.ErrTooLarge: %v", err)
	}
	// The build reads its packages concurrently until it stops; the bomb alone would be 1.5 GiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
		t.Errorf("the failed build allocated %d MiB", alloc>>20)
	}
}

// A source larger than the partition it goes into (a sparse 1 GiB file, free to make) is refused
// before it is read, naming the recipe line.
func TestSourceTooLarge(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "huge.bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "huge.bin"), 1<<30); err != nil {
		t.Fatal(err)
	}
	r := writeRecipe(t, dir, "kiln = 1\nname = \"huge\"\nversion = \"1.0.0\"\n[[system.files]]\npath = \"/opt/huge.bin\"\nsource = \"huge.bin\"\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := buildFails(t, r, filepath.Join(dir, "kiln.toml")+":6: system.files[0].source", "huge.bin holds 1073741824 bytes")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, fstree.ErrTooLarge) {
		t.Errorf("error does not wrap fstree.ErrTooLarge: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
		t.Errorf("the failed build allocated %d MiB", alloc>>20)
	}
}

// Only an empty directory or a previous build's output may be replaced: a directory holding
// anything Kiln did not write is refused and left as it was.
func TestOutDirOnlyKilnsOwn(t *testing.T) {
	const image = "kiln-tiny.img"
	manifest := `{"format": 1, "kiln": "1.0.0", "name": "kiln-tiny", "image": {"file": "kiln-tiny.img", "bmap": "kiln-tiny.img.bmap"}}`
	for _, tc := range []struct {
		name  string
		files map[string]string // path → contents; "" with a trailing '/' makes a directory
		want  string            // "" accepted, else in the error
	}{
		{"missing", nil, ""},
		{"empty", map[string]string{}, ""},
		{"previous build", map[string]string{"manifest.json": manifest, image: "img", image + ".bmap": "<bmap/>",
			"update/update.json": "{}", "update/kiln-tiny-1.0.0.efi": "MZ"}, ""},
		{"previous build of another name", map[string]string{"manifest.json": strings.ReplaceAll(manifest, "kiln-tiny", "old"),
			"old.img": "img", "old.img.bmap": "<bmap/>"}, ""},
		{"only user data under update", map[string]string{"update/mydata.txt": "mine"}, "no manifest.json"},
		{"user file", map[string]string{"thesis.odt": "years of work"}, "contains thesis.odt"},
		{"manifest that is not Kiln's", map[string]string{"manifest.json": `{"name": "webapp"}`, "update/": ""}, "no manifest.json"},
		{"manifest that is not JSON", map[string]string{"manifest.json": "hello"}, "no manifest.json"},
		{"previous build plus user data", map[string]string{"manifest.json": manifest, image: "img",
			"update/update.json": "{}", "update/mydata.txt": "mine"}, "update/mydata.txt"},
		{"previous build plus a folder in update", map[string]string{"manifest.json": manifest, "update/photos/a.jpg": "jpg"},
			"update/photos"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if tc.files != nil {
				os.MkdirAll(out, 0o755)
			}
			for p, data := range tc.files {
				full := filepath.Join(out, p)
				os.MkdirAll(filepath.Dir(full), 0o755)
				if strings.HasSuffix(p, "/") {
					continue
				}
				if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := assembler.CheckOutDir(out, image)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, assembler.ErrOutDirInUse) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "choose another output directory")):
				t.Errorf("error %v, want ErrOutDirInUse saying %q and what to do", err, tc.want)
			}
		})
	}
}

// A build into a directory holding only update/mydata.txt fails and keeps the file.
func TestOutDirUserUpdateFolderKept(t *testing.T) {
	opts := testimage.Options(t)
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	mine := filepath.Join(opts.OutDir, "update", "mydata.txt")
	os.MkdirAll(filepath.Dir(mine), 0o755)
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := assembler.Build(t.Context(), defaultRecipe(), opts); !errors.Is(err, assembler.ErrOutDirInUse) {
		t.Fatalf("build into a folder holding update/mydata.txt: %v, want ErrOutDirInUse", err)
	}
	if data, err := os.ReadFile(mine); err != nil || string(data) != "mine" {
		t.Fatalf("update/mydata.txt after the build: %q, %v", data, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(opts.OutDir), ".*")); len(left) != 0 {
		t.Errorf("the refused build left %v behind", left)
	}
}

// A source outside the recipe's folder that not everyone may read (a private key, /etc/shadow)
// is copied, but with a warning in the log, the progress and the result; sources inside the
// folder or readable by everyone give none.
func TestPrivateSourceWarns(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("data\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	secret := filepath.Join(elsewhere, "secret")
	write(secret, 0o600)
	write(filepath.Join(elsewhere, "public"), 0o644)
	write(filepath.Join(dir, "own"), 0o600)
	r := writeRecipe(t, dir, `kiln = 1
name = "warn"
version = "1.0.0"
[[system.files]]
path = "/etc/secret"
source = "`+secret+`"
[[system.files]]
path = "/etc/public"
source = "`+filepath.Join(elsewhere, "public")+`"
[[system.files]]
path = "/etc/own"
source = "own"
`)
	opts := testimage.Options(t)
	var log bytes.Buffer
	opts.Log = logrus.New()
	opts.Log.SetOutput(&log)
	var reported []string
	opts.Progress = func(e progress.Event) {
		if strings.HasPrefix(e.Message, "warning: ") {
			reported = append(reported, e.Message)
		}
	}
	opts.OutDir = filepath.Join(t.TempDir(), "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "kiln.toml") + ":6: system.files[0].source: " + secret + " lies outside the recipe's folder and is not readable by everyone (mode 0600)"
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], want) {
		t.Errorf("warnings %q, want one starting %q", res.Warnings, want)
	}
	if len(reported) != 1 || !strings.Contains(reported[0], want) {
		t.Errorf("progress warnings %q", reported)
	}
	if !strings.Contains(log.String(), "level=warning") || !strings.Contains(log.String(), "system.files[0].source") {
		t.Errorf("log:\n%s", log.String())
	}
}
