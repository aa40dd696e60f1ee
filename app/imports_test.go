package app

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The core packages and the CLI never depend on Fyne: they must build and run headless.
func TestCorePackagesDoNotImportFyne(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	patterns := []string{"./assembler/...", "./flasher/...", "./vmrunner/...", "./ota/...", "./internal/...",
		"./cli/...", "./cmd/...", "./assets/...", "./app/pwhash/...", "./app/rfb/..."}
	cmd := exec.Command(gobin, append([]string{"list", "-e", "-f",
		`{{.ImportPath}}: {{join .Deps " "}}`}, patterns...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, ": ")
		checked++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "fyne.io/") {
				t.Errorf("%s depends on %s", pkg, d)
				break
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d packages listed:\n%s", checked, out)
	}
	t.Logf("%d packages checked", checked)
}
