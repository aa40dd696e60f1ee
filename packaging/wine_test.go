//go:build linux

package packaging

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assets"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
)

// wine runs Windows programs in a private prefix.
type wine struct {
	bin, server, prefix string
	env                 []string
}

// winPath is the Windows name of a Linux path through Wine's Z: drive.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

func newWine(t *testing.T, dir string) *wine {
	t.Helper()
	w := &wine{prefix: filepath.Join(dir, "wine prefix")}
	for _, c := range []string{"wine64", "/usr/lib/wine/wine64"} {
		if p, err := exec.LookPath(c); err == nil {
			w.bin = p
			break
		}
	}
	for _, c := range []string{"wineserver", "/usr/lib/wine/wineserver64"} {
		if p, err := exec.LookPath(c); err == nil {
			w.server = p
			break
		}
	}
	if w.bin == "" || w.server == "" {
		testenv.Missing(t, "wine64 is not installed")
	}
	for _, e := range os.Environ() { // kiln.exe finds kiln-agent beside it, as a user's does
		if !strings.HasPrefix(e, "DISPLAY=") && !strings.HasPrefix(e, "WAYLAND_DISPLAY=") && !strings.HasPrefix(e, "KILN_AGENT=") {
			w.env = append(w.env, e)
		}
	}
	// No display and no Mono/Gecko installers: the first start only creates the prefix.
	w.env = append(w.env, "WINEPREFIX="+w.prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
	start := time.Now()
	if out, err := w.cmd(t, 3*time.Minute, dir, "wineboot", "--init").CombinedOutput(); err != nil {
		t.Fatalf("wineboot --init: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		c := exec.Command(w.server, "-k") // this prefix's server only
		c.Env = w.env
		c.Run()
	})
	t.Logf("wineboot --init (new prefix): %v", time.Since(start).Round(time.Millisecond))
	return w
}

func (w *wine) cmd(t *testing.T, timeout time.Duration, dir string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	c := exec.CommandContext(ctx, w.bin, args...)
	c.Dir, c.Env, c.WaitDelay = dir, w.env, 10*time.Second
	return c
}

// run runs a Windows program and returns its output, failing the test when it fails.
func (w *wine) run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := w.cmd(t, 5*time.Minute, dir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wine %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("wine %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return string(out)
}

// windowsRelease makes the Windows release zip the way make package does, with a CLI-only
// kiln.exe (KILN_NOGUI=1: no cgo, fast) of the given version, unpacks it under dir and returns the
// kiln.exe in it.
func windowsRelease(t *testing.T, dir, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute) // a cold build cache in CI
	defer cancel()
	cross, dist := filepath.Join(dir, "cross"), filepath.Join(dir, "dist")
	start := time.Now()
	c := exec.CommandContext(ctx, "bash", "cross.sh", version, cross, "windows")
	c.Env = append(os.Environ(), "KILN_NOGUI=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("cross.sh: %v\n%s", err, out)
	}
	t.Logf("cross-compile kiln.exe (CLI only, with resources): %v", time.Since(start).Round(time.Millisecond))
	c = exec.CommandContext(ctx, "bash", "build.sh", version, dist)
	c.Env = append(os.Environ(), "KILN_CROSS="+cross, "KILN_PACKAGES=windows", "KILN_ZIP_LEVEL=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	zips, _ := filepath.Glob(filepath.Join(dist, "kiln-*-windows-amd64.zip"))
	if len(zips) != 1 {
		t.Fatalf("want one Windows zip in %s, got %v", dist, zips)
	}
	zr, err := zip.OpenReader(zips[0])
	if err != nil {
		t.Fatalf("%s: %v", zips[0], err)
	}
	defer zr.Close()
	root := filepath.Join(dir, "Program Files")
	var exe string
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Fatalf("zip entry %q escapes the directory", f.Name)
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		switch filepath.Base(p) {
		case "kiln.exe":
			exe = p
			// The version resource names the version (UTF-16, as Explorer shows it).
			if !bytes.Contains(data, utf16le("ProductVersion")) || !bytes.Contains(data, utf16le(version)) {
				t.Errorf("kiln.exe has no version resource for %s", version)
			}
		case "README.txt":
			if !bytes.Contains(data, []byte("\r\n")) || !bytes.Contains(data, []byte(version)) {
				t.Errorf("README.txt: want CRLF line ends and the version:\n%s", data)
			}
		}
	}
	for _, f := range []string{"kiln.exe", "kiln-agent", "kiln-agent-amd64", "kiln-agent-arm64", "README.txt", "LICENSE.txt"} {
		if m, _ := filepath.Glob(filepath.Join(root, "kiln-*-windows-amd64", f)); len(m) != 1 {
			t.Errorf("the zip lacks kiln-<version>-windows-amd64/%s", f)
		}
	}
	if exe == "" {
		t.FailNow()
	}
	return exe
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// wineShim puts the bcryptprimitives.dll Go programs need (Wine 8 lacks it) into the prefix.
func wineShim(t *testing.T, w *wine) {
	t.Helper()
	gcc := testenv.Tool(t, "x86_64-w64-mingw32-gcc")
	dll := filepath.Join(w.prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	if out, err := exec.Command(gcc, "-shared", "-O2", "-s", "-o", dll, "wine/bcryptprimitives.c", "-ladvapi32").CombinedOutput(); err != nil {
		t.Fatalf("mingw: bcryptprimitives.dll: %v\n%s", err, out)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// sameOutputs checks that the Windows build wrote the same image, block map, manifest, SBOM and
// update bundle as the Linux build: byte for byte, mapped_bytes included (the block map follows what
// the image writers wrote, not the host filesystem's holes).
func sameOutputs(t *testing.T, lin, win string) {
	t.Helper()
	for _, f := range []string{"kiln-tiny.img", "kiln-tiny.img.bmap", "kiln-tiny.cdx.json", "manifest.json", "update/kiln-tiny-1.0.0.efi", "update/update.json"} {
		if a, b := sha256File(t, filepath.Join(lin, f)), sha256File(t, filepath.Join(win, f)); a != b {
			t.Errorf("%s differs between the Linux and the Windows build: %s vs %s", f, a, b)
		}
	}
	read := func(dir string) map[string]any {
		data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s/manifest.json: %v", dir, err)
		}
		return m
	}
	lm, wm := read(lin), read(win)
	if !reflect.DeepEqual(lm, wm) {
		a, _ := json.MarshalIndent(lm, "", " ")
		b, _ := json.MarshalIndent(wm, "", " ")
		t.Errorf("manifests differ:\nLinux:\n%s\nWindows:\n%s", a, b)
	}
}

// kiln.exe from the Windows release zip, run under Wine, builds the same image and manifest from the same
// inputs as the Linux build — also from a recipe with CRLF line ends in a directory with spaces,
// with Windows paths (drive letters, backslashes) throughout — and publishes an update repository
// that the device's verifier accepts.
func TestWindowsExeUnderWine(t *testing.T) {
	bin := os.Getenv("KILN_BIN")
	if bin == "" {
		testenv.Missing(t, "KILN_BIN not set: run through make test")
	}
	cache := testimage.Cache(t)
	agent := testimage.Agent(t)
	out, err := exec.Command(bin, "--version").Output()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) < 2 {
		t.Fatalf("%s --version: %v %q", bin, err, out)
	}
	version := fields[1]

	top := filepath.Join(t.TempDir(), "Kiln Test")
	os.MkdirAll(top, 0o755)
	w := newWine(t, top)
	wineShim(t, w)
	exe := windowsRelease(t, top, version)

	if got := w.run(t, top, exe, "--version"); strings.TrimSpace(got) != strings.TrimSpace(string(out)) {
		t.Fatalf("kiln.exe --version = %q, Linux kiln says %q", got, out)
	}

	keys := filepath.Join(top, "keys")
	env := []string{"KILN_KEYS=" + keys, "KILN_CACHE=" + cache, "KILN_AGENT=" + agent}
	w.env = append(w.env, "KILN_KEYS="+winPath(keys), "KILN_CACHE="+winPath(cache))
	linux := func(dir string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, bin, args...)
		c.Dir, c.Env = dir, append(os.Environ(), env...)
		start := time.Now()
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("linux kiln %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}

	t.Run("default recipe", func(t *testing.T) {
		lin, win := filepath.Join(top, "linux out"), filepath.Join(top, "windows out")
		linux(top, "build", "--out", lin)
		w.run(t, top, exe, "build", "--out", winPath(win))
		sameOutputs(t, lin, win)

		// publish: the repository made on Windows is one the device accepts.
		repoDir := filepath.Join(top, "update repo")
		w.run(t, top, exe, "publish", "--repo", winPath(repoDir), winPath(win))
		root, err := os.ReadFile(filepath.Join(keys, "root.json"))
		if err != nil {
			t.Fatal(err)
		}
		fetch := func(_ context.Context, name string, max int64) ([]byte, error) {
			b, err := os.ReadFile(filepath.Join(repoDir, "metadata", name))
			if errors.Is(err, os.ErrNotExist) {
				return nil, client.ErrNotFound
			}
			if int64(len(b)) > max {
				return nil, client.ErrTooLong
			}
			return b, err
		}
		v, err := (&client.Verifier{Root: root}).Update(t.Context(), fetch)
		if err != nil {
			t.Fatalf("the device rejects the repository kiln.exe published: %v", err)
		}
		want := sha256File(t, filepath.Join(lin, "update", "kiln-tiny-1.0.0.efi"))
		found := false
		for _, tg := range v.Targets {
			if tg.Name == "kiln-tiny" && tg.Version == "1.0.0" && tg.SHA256 == want {
				found = true
				if got := sha256File(t, filepath.Join(repoDir, ota.TargetFile(tg.Path, tg.SHA256))); got != want {
					t.Errorf("published payload %s has sha256 %s, want %s", tg.Path, got, want)
				}
			}
		}
		if !found {
			t.Fatalf("no verified target kiln-tiny 1.0.0 with sha256 %s in %+v", want, v.Targets)
		}
	})

	t.Run("CRLF recipe in a directory with spaces", func(t *testing.T) {
		crlf := []byte(strings.ReplaceAll(strings.ReplaceAll(string(assets.DefaultRecipe), "\r\n", "\n"), "\n", "\r\n"))
		mk := func(name string) string {
			d := filepath.Join(top, name, "my recipes")
			os.MkdirAll(d, 0o755)
			if err := os.WriteFile(filepath.Join(d, "kiln tiny.toml"), crlf, 0o644); err != nil {
				t.Fatal(err)
			}
			// The built-in recipe's lock, if any, pins the same packages for the copy.
			if lock, err := os.ReadFile(filepath.Join(cache, "locks", "kiln-tiny.lock")); err == nil {
				if err := os.WriteFile(filepath.Join(d, "kiln.lock"), lock, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return d
		}
		ld, wd := mk("linux"), mk("windows")
		linux(ld, "build", "--recipe", "kiln tiny.toml", "--out", "out")
		w.run(t, wd, exe, "build", "--recipe", "kiln tiny.toml", "--out", "out")
		sameOutputs(t, filepath.Join(ld, "out"), filepath.Join(wd, "out"))
		// The CRLF recipe is the default recipe: the same image as the built-in one's.
		if a, b := sha256File(t, filepath.Join(wd, "out", "kiln-tiny.img")), sha256File(t, filepath.Join(top, "linux out", "kiln-tiny.img")); a != b {
			t.Errorf("the CRLF copy of the default recipe gives another image: %s vs %s", a, b)
		}
	})
}
