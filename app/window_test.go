package app

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

// needTool skips when a tool is missing locally and fails under CI, where it must be installed.
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			testenv.Missing(t, "%s not installed", n)
		}
	}
}

// xrun runs an X client on disp and returns its output.
func xrun(t *testing.T, disp string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+disp)
	cmd.WaitDelay = time.Second // a child left holding the pipe does not hold the test
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// screenshot captures the window with ImageMagick's import.
func screenshot(t *testing.T, disp, win, save string) image.Image {
	t.Helper()
	data := xrun(t, disp, "import", "-window", win, "png:-")
	if err := os.WriteFile(save, data, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	return img
}

// colours counts the distinct colours in img (a blank or unrendered window has one or two).
func colours(img image.Image) int {
	seen := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
		}
	}
	return len(seen)
}

// The built binary opens its window under a real X server (Xvfb), shows each screen when its
// shortcut is pressed, and exits cleanly with Ctrl+Q.
func TestRealWindow(t *testing.T) {
	bin := os.Getenv("KILN_BIN")
	if bin == "" {
		testenv.Missing(t, "KILN_BIN not set: run through make test")
	}
	needTool(t, "xdotool", "xwininfo", "import")
	disp := testenv.Xvfb(t, "1280x800x24")
	home := t.TempDir()
	shots := filepath.Join(os.TempDir(), "kiln-window-test")
	os.MkdirAll(shots, 0o755)

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DISPLAY="+disp, "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config",
		"XDG_CACHE_HOME="+home+"/.cache", "KILN_DEMO=1", "KILN_SCREEN=build", "LIBGL_ALWAYS_SOFTWARE=1")
	// A file, not a pipe: Wait must not depend on every inherited descriptor being closed.
	logs := logFile{filepath.Join(home, "kiln.log")}
	f, err := os.Create(logs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()

	// Wait for the window to be mapped.
	var win string
	for range 300 {
		c := exec.Command("xdotool", "search", "--onlyvisible", "--name", "^Kiln$")
		c.Env = append(os.Environ(), "DISPLAY="+disp)
		if out, err := c.Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			win = strings.Fields(string(out))[0]
			break
		}
		select {
		case <-exited:
			t.Fatalf("kiln exited before showing a window: %v\n%s", waitErr, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if win == "" {
		t.Fatalf("no Kiln window within 30 s\n%s", logs.String())
	}
	info := string(xrun(t, disp, "xwininfo", "-id", win))
	w, h := geometry(t, info, "Width"), geometry(t, info, "Height")
	if w < 800 || h < 500 {
		t.Fatalf("window is %dx%d, smaller than the app's layout", w, h)
	}
	xrun(t, disp, "xdotool", "mousemove", "--window", win, "200", "200")

	var prev image.Image
	for i, name := range screenNames {
		xrun(t, disp, "xdotool", "key", fmt.Sprintf("ctrl+%d", i+1))
		var img image.Image
		// A frame is drawn within a few refreshes; poll until the screen has changed and is not blank.
		for range 100 {
			time.Sleep(100 * time.Millisecond)
			img = screenshot(t, disp, win, filepath.Join(shots, "window_"+name+".png"))
			if colours(img) > 16 && (prev == nil || !sameImage(prev, img)) {
				break
			}
		}
		if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Errorf("%s: screenshot is %v, window is %dx%d", name, b.Size(), w, h)
		}
		if n := colours(img); n <= 16 {
			t.Errorf("%s: screenshot looks blank (%d colours)", name, n)
		}
		if prev != nil && sameImage(prev, img) {
			t.Errorf("%s: the screen did not change after ctrl+%d", name, i+1)
		}
		prev = img
	}
	t.Logf("screenshots in %s", shots)

	xrun(t, disp, "xdotool", "key", "ctrl+q")
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("kiln exited with %v\n%s", waitErr, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("kiln did not exit after ctrl+q\n%s", logs.String())
	}
}

func geometry(t *testing.T, info, key string) int {
	t.Helper()
	m := regexp.MustCompile(key + `:\s+(\d+)`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("xwininfo gave no %s:\n%s", key, info)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func sameImage(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 3 {
		for x := r.Min.X; x < r.Max.X; x += 3 {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

type logFile struct{ path string }

func (l logFile) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}

// Without a display server the binary exits with a message that says what to do, not a panic.
func TestNoDisplayIsAClearError(t *testing.T) {
	bin := os.Getenv("KILN_BIN")
	if bin == "" {
		testenv.Missing(t, "KILN_BIN not set: run through make test")
	}
	home := t.TempDir()
	for _, disp := range []string{"", ":4095"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), "DISPLAY="+disp, "WAYLAND_DISPLAY=", "HOME="+home, "XDG_RUNTIME_DIR="+home)
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 1 || err == nil {
			t.Errorf("DISPLAY=%q: exit code %d, want 1\n%s", disp, code, out)
		}
		if strings.Contains(string(out), "goroutine") || !strings.Contains(string(out), "kiln help") {
			t.Errorf("DISPLAY=%q: no clear message:\n%s", disp, out)
		}
	}
}
