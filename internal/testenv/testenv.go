// Package testenv holds the one rule Kiln's tests follow for what they need from the machine: a
// missing tool, input or privilege skips the test locally with the reason, and fails it under
// CI=true, where `make test` has installed everything.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI, where nothing may be missing.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing stops the test for want of something: t.Skip locally, t.Fatal under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("CI: %s (make deps installs what tests need)", msg)
		return
	}
	t.Skip(msg)
}

// Tool returns the path of a peer tool the test runs, or stops the test through Missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed", name)
	}
	return p
}
