package archive

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

// source is the apt source of a test archive.
func source(ta *archivetest.Archive) Source {
	return Source{URI: ta.URL, Suite: "stable", Components: []string{"main"}, SignedBy: ta.Keyring}
}

// load reads a test archive's indices for arches (amd64 when none).
func load(t *testing.T, ta *archivetest.Archive, arches ...string) (*Archive, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(arches) == 0 {
		arches = []string{"amd64"}
	}
	c := &Client{Sources: []Source{source(ta)}, Arches: arches}
	return c.Load(ctx)
}

func names(pkgs []*Package) string {
	var s []string
	for _, p := range pkgs {
		s = append(s, p.Name+"="+p.Version)
	}
	return strings.Join(s, " ")
}
