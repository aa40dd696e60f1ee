package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/testimage"
)

// buildEnv prepares a `kiln build` run: inputs from the cache, the agent, signing keys in a
// temporary directory.
func buildEnv(t *testing.T) (*Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	t.Setenv("KILN_CACHE", testimage.Cache(t))
	t.Setenv("KILN_AGENT", testimage.Agent(t))
	t.Setenv("KILN_KEYS", t.TempDir())
	var stdout, stderr bytes.Buffer
	log := logrus.New()
	log.SetOutput(&stderr)
	return &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""), Log: log}, &stdout, &stderr
}

func TestBuildJSON(t *testing.T) {
	env, stdout, stderr := buildEnv(t)
	t.Chdir(t.TempDir())
	if code := run(t.Context(), env, []string{"build", "--json"}); code != 0 {
		t.Fatalf("kiln build --json: exit %d\n%s", code, stderr)
	}
	var phases []string
	var result map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev struct {
			Event  string         `json:"event"`
			Phase  string         `json:"phase"`
			Result map[string]any `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stdout line is not JSON: %q", line)
		}
		switch ev.Event {
		case "progress":
			if len(phases) == 0 || phases[len(phases)-1] != ev.Phase {
				phases = append(phases, ev.Phase)
			}
		case "result":
			result = ev.Result
		default:
			t.Errorf("unknown event %q", ev.Event)
		}
	}
	for _, p := range []string{"inputs", "initramfs", "uki", "disk", "hash", "finish"} {
		if !strings.Contains(" "+strings.Join(phases, " ")+" ", " "+p+" ") {
			t.Errorf("no progress event of phase %s (phases: %v)", p, phases)
		}
	}
	if result == nil {
		t.Fatal("no result event")
	}
	// The default output directory is out/<name>-<version>.
	img, _ := result["image"].(string)
	if img != filepath.Join("out", "kiln-tiny-1.0.0", "kiln-tiny.img") {
		t.Errorf("image %q, want out/kiln-tiny-1.0.0/kiln-tiny.img", img)
	}
	if _, err := os.Stat(img); err != nil {
		t.Error(err)
	}
	if sha, _ := result["image_sha256"].(string); len(sha) != 64 {
		t.Errorf("result has no image sha256: %v", result)
	}
}

func TestBuildSummary(t *testing.T) {
	env, stdout, stderr := buildEnv(t)
	out := filepath.Join(t.TempDir(), "o")
	recipe := filepath.Join(t.TempDir(), "mini.toml")
	os.WriteFile(recipe, []byte("kiln = 1\nname = \"mini\"\nversion = \"0.1.0\"\n[system]\nhostname = \"mini\"\n"), 0o644)
	if code := run(t.Context(), env, []string{"build", "--recipe", recipe, "--out", out}); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"built mini 0.1.0", filepath.Join(out, "mini.img"), "sha256", filepath.Join(out, "manifest.json")} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

// A source outside the recipe's folder that not everyone may read is listed in the summary.
func TestBuildSummaryWarnsPrivateSource(t *testing.T) {
	env, stdout, stderr := buildEnv(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("key\n"), 0o600)
	recipe := filepath.Join(t.TempDir(), "mini.toml")
	os.WriteFile(recipe, []byte("kiln = 1\nname = \"mini\"\nversion = \"0.1.0\"\n[[system.files]]\npath = \"/etc/secret\"\nsource = \""+secret+"\"\n"), 0o644)
	if code := run(t.Context(), env, []string{"build", "--recipe", recipe, "--out", filepath.Join(t.TempDir(), "o")}); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	want := "  warning   " + recipe + ":6: system.files[0].source: " + secret + " lies outside the recipe's folder"
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, stdout)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("kiln = 1\nname = \"x\"\nversion = \"1.0.0\"\n[board]\ndisk_size = \"lots\"\n"), 0o644)
	device := filepath.Join(dir, "device.toml")
	os.WriteFile(device, []byte("kiln = 1\nname = \"x\"\nversion = \"1.0.0\"\n[[system.files]]\npath = \"/etc/z\"\nsource = \"/dev/zero\"\n"), 0o644)
	mine := filepath.Join(dir, "mine")
	os.MkdirAll(filepath.Join(mine, "update"), 0o755)
	os.WriteFile(filepath.Join(mine, "update", "mydata.txt"), []byte("mine"), 0o644)
	future := filepath.Join(dir, "future.toml")
	os.WriteFile(future, []byte("kiln = 3\nname = \"x\"\nversion = \"1.0.0\"\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string
	}{
		{"bad recipe", []string{"build", "--recipe", bad}, nil, 1, []string{"kiln build: ", "bad.toml:5", "board.disk_size"}},
		{"future format", []string{"build", "--recipe", future}, nil, 1, []string{"recipe format 3 is not supported by this kiln (supports 1–1)"}},
		{"device as source", []string{"build", "--recipe", device}, nil, 1, []string{"device.toml:6: system.files[0].source", "/dev/zero", "not a regular file"}},
		{"out holds user files", []string{"build", "--out", mine}, nil, 1, []string{"holds no manifest.json of a previous build", "choose another output directory"}},
		{"missing recipe", []string{"build", "--recipe", filepath.Join(dir, "nope.toml")}, nil, 1, []string{"nope.toml", "no such file"}},
		{"stray argument", []string{"build", "extra"}, nil, 2, []string{"unexpected argument"}},
		{"bad epoch", []string{"build"}, map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, 1, []string{"SOURCE_DATE_EPOCH", "seconds since 1970"}},
		{"agent missing", []string{"build"}, map[string]string{"KILN_AGENT": filepath.Join(dir, "no-agent")}, 1, []string{"KILN_AGENT", "no-agent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, stderr := buildEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			t.Chdir(t.TempDir())
			code := run(t.Context(), env, tc.args)
			msg := stderr.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, msg)
			}
			// The error is one line (a first build may say before it that it created signing keys).
			if i := strings.Index(msg, "kiln build: "); code == 1 && (i < 0 || strings.Count(strings.TrimSpace(msg[i:]), "\n") != 0) {
				t.Errorf("error is not one line:\n%s", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q lacks %q", msg, w)
				}
			}
			if _, err := os.Stat("out"); err == nil {
				t.Error("a failed build left out/ behind")
			}
			if data, err := os.ReadFile(filepath.Join(mine, "update", "mydata.txt")); err != nil || string(data) != "mine" {
				t.Errorf("update/mydata.txt after the build: %q, %v", data, err)
			}
		})
	}
}

// TestBuildCancelled: a cancelled context (Ctrl-C) ends the build with exit code 130 and no output.
func TestBuildCancelled(t *testing.T) {
	env, _, stderr := buildEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	parent := t.TempDir()
	code := run(ctx, env, []string{"build", "--out", filepath.Join(parent, "o")})
	if code != 130 || !strings.Contains(stderr.String(), "kiln build: cancelled") {
		t.Fatalf("exit %d, stderr %q; want 130 and \"cancelled\"", code, stderr)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left %v behind", left)
	}
}

// TestBuildInterrupt sends SIGINT to a running `kiln build` (bin/kiln, $KILN_BIN) while it works:
// it exits 130 and removes its partial outputs.
func TestBuildInterrupt(t *testing.T) {
	bin := os.Getenv("KILN_BIN")
	if bin == "" {
		testimage.Missing(t, "KILN_BIN not set (make test sets it to bin/kiln)")
	}
	buildEnv(t)
	parent := t.TempDir()
	cmd := exec.Command(bin, "build", "--json", "--out", filepath.Join(parent, "o"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Interrupt while the disk image is being written, when the most is on disk.
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), `"phase":"disk"`) {
	}
	if sc.Err() != nil || !strings.Contains(sc.Text(), `"phase":"disk"`) {
		t.Fatalf("kiln build never reached the disk phase: %v\n%s", sc.Err(), stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for sc.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("kiln build did not stop within 60 s of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130; stderr:\n%s", code, stderr.String())
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("an interrupted build left %v behind", left)
	}
}
