package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("content %q, %v; want new", got, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	assertOnly(t, dir, "state.json")
}

func TestWriteFromFailingReaderKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "payload")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset")
	err := WriteFrom(p, &failingReader{data: "half of the new", err: boom}, 0o644)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v: want it to wrap the read error and name %s", err, p)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Fatalf("target is %q after a failed write; want the old content", got)
	}
	assertOnly(t, dir, "payload")
}

func TestAbortAfterCommitKeepsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("x")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if got, _ := os.ReadFile(p); string(got) != "x" {
		t.Fatalf("content %q after Commit+Abort", got)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("a second Commit succeeded")
	}
	assertOnly(t, dir, "f")
}

func TestCommitNewKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "owner.key")
	if err := os.WriteFile(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("second")
	if err := f.CommitNew(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CommitNew over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "first" {
		t.Fatalf("existing file became %q", got)
	}
	assertOnly(t, dir, "owner.key")

	q := filepath.Join(dir, "new.key")
	g, err := Create(q, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	g.WriteString("fresh")
	if err := g.CommitNew(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(q); string(got) != "fresh" {
		t.Fatalf("new file holds %q", got)
	}
	assertOnly(t, dir, "new.key", "owner.key")
}

func TestCreateInMissingDirFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "no", "such", "dir", "f")
	if err := Write(p, nil, 0o644); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v: want an error naming %s", err, p)
	}
}

type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// assertOnly checks that dir holds exactly the named files: no temporary file is left behind.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("dir holds %v, want %v", got, names)
	}
}
