package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestBoardsCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""), Log: logrus.New()}
	if rc := run(context.Background(), env, []string{"boards"}); rc != 0 {
		t.Fatalf("kiln boards: exit %d: %s", rc, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"NAME", "pc ", "x86_64", "arm64-uefi", "aarch64", "rpi ", "raspberry"} {
		if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A user's board file is checked and listed; a broken one is an error naming its line.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("name = \"bad\"\narch = \"mips\"\n"), 0o644)
	stdout.Reset()
	stderr.Reset()
	if rc := run(context.Background(), env, []string{"boards", "--json", bad}); rc == 0 || !strings.Contains(stderr.String(), "bad.toml:2: arch") {
		t.Errorf("broken board file: exit %d, stderr %s", rc, stderr.String())
	}
	stdout.Reset()
	if rc := run(context.Background(), env, []string{"boards", "--json"}); rc != 0 {
		t.Fatal(stderr.String())
	}
	var res struct {
		Result []struct{ Name, Arch string }
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Result) != 3 || res.Result[0].Arch != "aarch64" {
		t.Errorf("--json: %v %s", err, stdout.String())
	}
}
