// Package workdir makes temporary working directories whose names record the process that owns
// them, and removes those whose owner is gone: a process killed outright (SIGKILL, a power cut)
// cannot remove its own, and they may hold gigabytes.
package workdir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// New creates a directory in parent (os.TempDir() when empty) named prefix + "<pid>-<random>".
func New(parent, prefix string) (string, error) {
	return os.MkdirTemp(parent, prefix+strconv.Itoa(os.Getpid())+"-")
}

// Owner returns the PID recorded in the name of a directory New made with prefix.
func Owner(dir, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(filepath.Base(dir), prefix)
	if !ok {
		return 0, false
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil && n > 0
}

// Sweep removes the directories (and files) in parent named with prefix whose owner process has
// ended, and returns what it removed. Entries of running processes, and names it did not make,
// are left alone.
func Sweep(parent, prefix string) ([]string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []string
	for _, e := range entries {
		pid, ok := Owner(e.Name(), prefix)
		if !ok || pid == os.Getpid() || Alive(pid) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		removed = append(removed, p)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("remove stale working directories: %s", strings.Join(errs, "; "))
	}
	return removed, nil
}
