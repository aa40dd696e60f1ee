package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/internal/testenv"
)

// loopDrive is a loop device standing in for a stick (see testenv.LoopDrive); the flash tests
// also mount it.
func loopDrive(t *testing.T, size int64, format bool) string {
	t.Helper()
	testenv.Tool(t, "mount")
	return testenv.LoopDrive(t, size, format)
}

func mountAt(t *testing.T, dev, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s %s: %v %s", dev, dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

func flashEnv(stdin string) (*Env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	log := logrus.New()
	log.SetOutput(&stderr)
	log.SetLevel(logrus.WarnLevel)
	return &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(stdin), Log: log}, &stdout, &stderr
}

func testImageFile(t *testing.T, size int) string {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	p := filepath.Join(t.TempDir(), "test.img")
	os.WriteFile(p, data, 0o644)
	return p
}

// TestFlashConfirmationNamesMountpoints: a drive mounted under a temporary directory is offered,
// the confirmation says where it is mounted and that Kiln unmounts it, and the flash then
// unmounts and writes it; a drive mounted at a system place is refused, untouched.
func TestFlashConfirmationNamesMountpoints(t *testing.T) {
	img := testImageFile(t, 2<<20)
	dev := loopDrive(t, 8<<20, true)
	mnt := t.TempDir()
	mountAt(t, dev, mnt)

	env, stdout, stderr := flashEnv("y\n")
	if code := run(t.Context(), env, []string{"flash", "--image", img, "--device", dev}); code != 0 {
		t.Fatalf("kiln flash: exit %d\n%s", code, stderr)
	}
	if want := "mounted at " + mnt + ": Kiln unmounts it first"; !strings.Contains(stderr.String(), want) {
		t.Fatalf("the confirmation does not say %q:\n%s", want, stderr)
	}
	if !strings.Contains(stdout.String(), dev+": written and verified") {
		t.Fatalf("stdout: %s", stdout)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+mnt+" ") {
		t.Fatalf("%s is still mounted", mnt)
	}

	// A system mount: outside /media, /mnt and the temporary directories.
	sys := loopDrive(t, 8<<20, true)
	dir, err := os.MkdirTemp("/", ".kiln-test-mount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	mountAt(t, sys, dir)
	env, _, stderr = flashEnv("y\n")
	if code := run(t.Context(), env, []string{"flash", "--image", img, "--device", sys, "--yes"}); code == 0 ||
		!strings.Contains(stderr.String(), flasher.ErrSystemDrive.Error()) || !strings.Contains(stderr.String(), dir) {
		t.Fatalf("a drive mounted at %s was not refused as a system drive: exit %d\n%s", dir, code, stderr)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(b), " "+dir+" ") {
		t.Fatalf("the system mount %s was unmounted", dir)
	}
}

// screen replays terminal output (text, \n, \r, erase line, cursor up) and returns its lines.
func screen(out string) []string {
	var rows [][]rune
	row, col := 0, 0
	for i := 0; i < len(out); {
		switch {
		case strings.HasPrefix(out[i:], "\x1b[2K"):
			if row < len(rows) {
				rows[row] = nil
			}
			i += 4
			continue
		case strings.HasPrefix(out[i:], "\x1b["):
			j := i + 2
			n := 0
			for j < len(out) && out[j] >= '0' && out[j] <= '9' {
				n = n*10 + int(out[j]-'0')
				j++
			}
			if j < len(out) && out[j] == 'A' {
				row = max(0, row-max(n, 1))
			}
			i = j + 1
			continue
		}
		r := []rune(out[i:])[0]
		i += len(string(r))
		switch r {
		case '\n':
			row, col = row+1, 0
		case '\r':
			col = 0
		default:
			for len(rows) <= row {
				rows = append(rows, nil)
			}
			for len(rows[row]) <= col {
				rows[row] = append(rows[row], ' ')
			}
			rows[row][col] = r
			col++
		}
	}
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = strings.TrimRight(string(r), " ")
	}
	return lines
}

// TestFlashProgressOneLinePerDrive flashes two loop devices at once through the terminal progress
// display: the screen ends with exactly one line per drive, each showing its drive's final state,
// not a new bar at every switch between drives.
func TestFlashProgressOneLinePerDrive(t *testing.T) {
	img := testImageFile(t, 24<<20)
	a, b := loopDrive(t, 32<<20, false), loopDrive(t, 32<<20, false)
	job, err := flasher.Prepare(img, []string{a, b}, flasher.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	f, finish := driveProgress(&out, []string{a, b})
	job.SetProgress(f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := job.Run(ctx); err != nil {
		t.Fatal(err)
	}
	finish()
	lines := screen(out.String())
	if len(lines) != 2 {
		t.Fatalf("the screen holds %d lines, want one per drive:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, dev := range []string{a, b} {
		if !strings.HasPrefix(lines[i], dev+" ") || !strings.Contains(lines[i], "verifying") || !strings.Contains(lines[i], "100%") {
			t.Errorf("line %d is not %s's final state: %q", i, dev, lines[i])
		}
	}
	if redraws := strings.Count(out.String(), "\x1b[2A"); redraws < 2 {
		t.Errorf("the lines were redrawn %d times: progress was not shown while writing", redraws)
	}
}
