//go:build unix

package fstree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ReadFile reads regular files only, so /dev/zero or a FIFO named as a source fails at once
// instead of filling memory or blocking, and it never reads more than its limit.
func TestReadFileRegularOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o644))
	for _, p := range []string{"/dev/zero", fifo, dir} {
		if _, err := ReadFile(p, 1<<20); !errors.Is(err, ErrType) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadFile(%s) = %v, want ErrType", p, err)
		}
	}
	f := filepath.Join(dir, "f")
	must(t, os.WriteFile(f, []byte("0123456789"), 0o644))
	if _, err := ReadFile(f, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile over the limit = %v, want ErrTooLarge", err)
	}
	if data, err := ReadFile(f, 10); err != nil || string(data) != "0123456789" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
}
