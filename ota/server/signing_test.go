package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// TestSigningKeysPolicy: the server says whether, and why not, it keeps the timestamp fresh;
// an unusable key is reported, not silently dropped.
func TestSigningKeysPolicy(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	newServer := func(keyDir string) *server.Server {
		t.Setenv("KILN_KEYS", keyDir)
		s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0", OwnerKeys: true})
		if err != nil {
			t.Fatalf("New must not fail over signing keys: %v", err)
		}
		return s
	}

	if err := newServer(keys.Dir).SigningError(); err != nil {
		t.Fatalf("the repository's own keys: %v", err)
	}
	other := otatest.Keys(t)
	if err := newServer(other.Dir).SigningError(); !errors.Is(err, server.ErrNotResigning) || !strings.Contains(err.Error(), "not this repository's") {
		t.Errorf("another owner's keys: %v", err)
	}
	empty := t.TempDir()
	if err := newServer(empty).SigningError(); !errors.Is(err, server.ErrNotResigning) || !strings.Contains(err.Error(), empty) {
		t.Errorf("no keys: %v", err)
	}
	if _, err := os.Stat(filepath.Join(empty, "root.json")); err == nil {
		t.Error("the server made keys")
	}
	if err := os.Chmod(filepath.Join(keys.Dir, "timestamp.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := newServer(keys.Dir).SigningError()
	if !errors.Is(err, server.ErrNotResigning) || !errors.Is(err, repo.ErrKeyPermissions) {
		t.Errorf("a key others can read: %v, want ErrNotResigning wrapping ErrKeyPermissions", err)
	}
	if !strings.Contains(err.Error(), "timestamp will not be re-signed") {
		t.Errorf("message %q does not say the timestamp will not be re-signed", err)
	}
}
