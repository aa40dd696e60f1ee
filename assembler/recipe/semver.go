package recipe

import (
	"strings"

	"github.com/kilnproject/kiln/internal/semver"
)

// Version is a parsed semantic version (internal/semver).
type Version = semver.Version

// ParseVersion parses a semantic version ("1.2.3", "2.0.0-rc.1"). Build metadata ("+abc") is
// accepted and ignored in comparisons.
func ParseVersion(s string) (Version, error) { return semver.Parse(s) }

// CompareVersions compares two version strings by semantic-version precedence (-1, 0, +1).
// A string that is not a valid version sorts before every valid one; two invalid strings compare
// as strings. Callers that must reject bad versions use ParseVersion first.
func CompareVersions(a, b string) int {
	va, ea := semver.Parse(a)
	vb, eb := semver.Parse(b)
	switch {
	case ea != nil && eb != nil:
		return strings.Compare(a, b)
	case ea != nil:
		return -1
	case eb != nil:
		return 1
	}
	return va.Compare(vb)
}
