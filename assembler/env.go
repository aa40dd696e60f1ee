package assembler

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultSourceDateEpoch is the timestamp given to every file in an image when SOURCE_DATE_EPOCH is
// not set: 2024-01-01T00:00:00Z. A constant rather than the clock or the recipe's mtime (which a
// checkout or a copy changes) keeps two builds of the same recipe and inputs byte-identical
// anywhere; it lies inside the FAT date range (1980–2107), which 0 would not.
const DefaultSourceDateEpoch = 1704067200

// SourceDateEpoch returns $SOURCE_DATE_EPOCH (reproducible-builds.org) or DefaultSourceDateEpoch.
func SourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return DefaultSourceDateEpoch, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970 as a non-negative integer", s)
	}
	return v, nil
}

// DefaultCache returns the input cache: $KILN_CACHE, else <user cache dir>/kiln.
func DefaultCache() (string, error) {
	if d := os.Getenv("KILN_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("input cache: %w (set KILN_CACHE to the directory holding debs/)", err)
	}
	return filepath.Join(d, "kiln"), nil
}

// ErrNoAgent: the kiln-agent binary that goes into every image was not found.
var ErrNoAgent = errors.New("kiln-agent not found")

// FindAgent locates the kiln-agent binary: $KILN_AGENT, else next to the running executable, else
// where the Kiln package installs it.
func FindAgent() (string, error) {
	if p := os.Getenv("KILN_AGENT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("KILN_AGENT: %w", err)
		}
		return p, nil
	}
	exe, err := os.Executable()
	candidates := []string{"/usr/lib/kiln/kiln-agent"}
	if err == nil {
		candidates = append([]string{filepath.Join(filepath.Dir(exe), "kiln-agent")}, candidates...)
	}
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s): run `make build` (it writes bin/kiln-agent) or set KILN_AGENT to its path",
		ErrNoAgent, strings.Join(candidates, ", "))
}
