package ota

import (
	"fmt"
	"strings"

	"github.com/kilnproject/kiln/internal/semver"
)

type version = semver.Version

// parseVersion parses a version with the one SemVer syntax Kiln has (internal/semver).
func parseVersion(s string) (version, error) { return semver.Parse(s) }

// CheckVersion returns an error wrapping ErrBadVersion unless s is a semantic version, which
// also makes it safe in a file name: publish, target selection and the agent call it before
// they use a version.
func CheckVersion(s string) error { return semver.Check(s) }

// CompareVersions returns -1, 0 or +1 as a is older than, the same as or newer than b.
func CompareVersions(a, b string) (int, error) {
	return semver.Compare(a, b)
}

// InRange reports whether version v may install an update whose compatible range is
// [minFrom, maxFrom]. An empty minFrom means no lower bound. maxFrom may end in wildcards
// ("2.9.x", "2.x") meaning any version of that line; an empty maxFrom means any version below
// the update's own version to.
func InRange(v, minFrom, maxFrom, to string) (bool, error) {
	pv, err := parseVersion(v)
	if err != nil {
		return false, err
	}
	if minFrom != "" {
		lo, err := parseVersion(minFrom)
		if err != nil {
			return false, fmt.Errorf("min_from: %w", err)
		}
		if pv.Compare(lo) < 0 {
			return false, nil
		}
	}
	if maxFrom == "" {
		hi, err := parseVersion(to)
		if err != nil {
			return false, err
		}
		return pv.Compare(hi) < 0, nil
	}
	hi, inclusive, err := upperBound(maxFrom)
	if err != nil {
		return false, fmt.Errorf("max_from: %w", err)
	}
	if hi == nil {
		return true, nil
	}
	c := pv.Compare(*hi)
	return c < 0 || (inclusive && c == 0), nil
}

// upperBound turns max_from into a bound: "2.9.4" is inclusive, "2.9.x" means below 2.10.0,
// "2.x" below 3.0.0, "x" no bound (nil).
func upperBound(s string) (*version, bool, error) {
	parts := strings.Split(s, ".")
	wild := -1
	for i, p := range parts {
		if p == "x" || p == "X" || p == "*" {
			wild = i
			break
		}
	}
	if wild < 0 {
		v, err := parseVersion(s)
		return &v, true, err
	}
	if wild == 0 {
		return nil, false, nil
	}
	// Complete the numbers before the wildcard with zeros, check them, then raise the last.
	full := append(parts[:wild:wild], "0", "0", "0")[:3]
	v, err := parseVersion(strings.Join(full, "."))
	if err != nil || wild > 2 || wild < len(parts)-1 {
		return nil, false, fmt.Errorf("%w %q: want a version such as 2.9.4 or 2.9.x", ErrBadVersion, s)
	}
	*[]*uint64{&v.Major, &v.Minor}[wild-1]++
	return &v, false, nil
}

// RangeText describes the versions [minFrom, maxFrom] that may install version to, for messages:
// "2.0.0–2.9.x", "2.0.0 or later below 3.0.0".
func RangeText(minFrom, maxFrom, to string) string {
	lo := minFrom
	if lo == "" {
		lo = "0.0.0"
	}
	if maxFrom == "" {
		return fmt.Sprintf("%s or later below %s", lo, to)
	}
	return lo + "–" + maxFrom
}
