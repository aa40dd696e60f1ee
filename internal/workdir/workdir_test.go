package workdir

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestSweepRemovesOnlyDirectoriesOfEndedProcesses(t *testing.T) {
	parent := t.TempDir()
	mine, err := New(parent, ".out.build-")
	if err != nil {
		t.Fatal(err)
	}
	if pid, ok := Owner(mine, ".out.build-"); !ok || pid != os.Getpid() {
		t.Fatalf("Owner(%s) = %d, %v; want this process", mine, pid, ok)
	}
	// A process that has ended: its PID is free.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(parent, ".out.build-"+strconv.Itoa(cmd.Process.Pid)+"-123")
	deadOld := dead + ".old"
	// A running process that is not this one.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	live := filepath.Join(parent, ".out.build-"+strconv.Itoa(sleeper.Process.Pid)+"-456")
	other := filepath.Join(parent, ".out.build-notapid-1")
	unrelated := filepath.Join(parent, "out")
	for _, d := range []string{dead, deadOld, live, other, unrelated} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := Sweep(parent, ".out.build-")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{dead, deadOld}; !slices.Equal(removed, want) {
		t.Fatalf("removed %q, want %q", removed, want)
	}
	for _, d := range []string{mine, live, other, unrelated} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s was removed: %v", d, err)
		}
	}
}
