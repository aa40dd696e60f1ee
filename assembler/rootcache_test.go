package assembler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPruneRoots: the root image cache keeps the most recently used images, each with its
// description, and removes the rest.
func TestPruneRoots(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	for i, name := range []string{"e", "d", "c", "b", "a"} { // a is the newest
		for _, ext := range []string{".json", ".erofs"} {
			p := filepath.Join(dir, name+ext)
			if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
			mt := now.Add(time.Duration(i) * time.Minute)
			os.Chtimes(p, mt, mt)
		}
	}
	pruneRoots(dir, 3)
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if want := "a.erofs a.json b.erofs b.json c.erofs c.json"; strings.Join(got, " ") != want {
		t.Errorf("after pruning: %q, want %q", got, want)
	}
}
