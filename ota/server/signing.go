package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kilnproject/kiln/ota/repo"
)

// ErrNotResigning wraps why the server does not keep the repository's timestamp fresh; the
// timestamp then expires 7 days after it was last signed and devices stop updating.
var ErrNotResigning = errors.New("timestamp will not be re-signed")

// signingKeys decides which keys re-sign the timestamp: cfg.Keys, else with cfg.OwnerKeys the
// owner's keys (repo.DefaultKeyDir, KILN_KEYS) if they exist — the server never makes keys —
// and only when they are the keys the repository was published with. The error says why
// there are none.
func signingKeys(cfg Config, repoRoot []byte) (*repo.Keys, error) {
	keys := cfg.Keys
	if keys == nil {
		if !cfg.OwnerKeys {
			return nil, fmt.Errorf("%w: no signing keys given", ErrNotResigning)
		}
		dir, err := repo.DefaultKeyDir()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotResigning, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "root.json")); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no signing keys in %s (run kiln serve where kiln publish ran, or set KILN_KEYS)", ErrNotResigning, dir)
		}
		if keys, err = repo.LoadOrCreateKeys(dir); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotResigning, err)
		}
	}
	want, err := repo.Fingerprint(repoRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotResigning, err)
	}
	if got, _ := repo.Fingerprint(keys.Root); got != want {
		return nil, fmt.Errorf("%w: the keys in %s (root %s) are not this repository's (root %s); serve it from the machine that published it, or set KILN_KEYS", ErrNotResigning, keys.Dir, got, want)
	}
	return keys, nil
}

// SigningError is nil while the server keeps the repository's timestamp fresh; otherwise it
// wraps ErrNotResigning and says why (no keys, other keys, or the last re-signing failed).
func (s *Server) SigningError() error {
	s.signMu.Lock()
	defer s.signMu.Unlock()
	return s.signErr
}

func (s *Server) setSigningError(err error) {
	s.signMu.Lock()
	s.signErr = err
	s.signMu.Unlock()
}
