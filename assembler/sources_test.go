package assembler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/recipe"
)

// TestArchiveSources checks where a recipe's packages come from: the host's apt sources
// (filtered by archive.suites), the recipe's mirrors, and the messages for a host without apt
// sources or without an archive keyring.
func TestArchiveSources(t *testing.T) {
	old := hostRoot
	t.Cleanup(func() { hostRoot = old })
	hostRoot = t.TempDir()

	r := recipe.Default()
	_, err := ArchiveSources(r)
	if !errors.Is(err, ErrNoArchive) || !strings.Contains(err.Error(), "add an [archive] section") {
		t.Errorf("no apt sources: %v", err)
	}
	r.Archive = &recipe.Archive{Mirrors: []string{"http://127.0.0.1:9/debian/"}, Suites: []string{"stable"}}
	if _, err := ArchiveSources(r); err == nil || !strings.Contains(err.Error(), "set archive.keyring") {
		t.Errorf("mirror without a keyring on a host without one: %v", err)
	}
	r.Archive.Keyring = "/keys/archive.asc"
	srcs, err := ArchiveSources(r)
	if err != nil || len(srcs) != 1 || srcs[0].URI != "http://127.0.0.1:9/debian" || srcs[0].Components[0] != "main" || srcs[0].SignedBy != "/keys/archive.asc" {
		t.Errorf("recipe mirror: %+v, %v", srcs, err)
	}

	dir := filepath.Join(hostRoot, "etc/apt/sources.list.d")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "debian.sources"), []byte("Types: deb\nURIs: http://127.0.0.1:9/debian\n"+
		"Suites: bookworm bookworm-updates trixie\nComponents: main\nSigned-By: /k.gpg\n"), 0o644)
	r.Archive = &recipe.Archive{Suites: []string{"bookworm"}, Components: []string{"main", "contrib"}}
	srcs, err = ArchiveSources(r)
	var suites []string
	for _, s := range srcs {
		suites = append(suites, s.Suite)
		if len(s.Components) != 2 || s.SignedBy != filepath.Join(hostRoot, "k.gpg") {
			t.Errorf("host source %+v", s)
		}
	}
	if err != nil || strings.Join(suites, " ") != "bookworm bookworm-updates" {
		t.Errorf("host sources for bookworm: %q, %v", suites, err)
	}
	r.Archive.Suites = []string{"sid"}
	if _, err := ArchiveSources(r); !errors.Is(err, ErrNoArchive) {
		t.Errorf("a suite the host lacks: %v", err)
	}
}
