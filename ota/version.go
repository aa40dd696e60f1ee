package ota

import (
	"fmt"
	"strconv"
	"strings"
)

// version is a parsed MAJOR.MINOR.PATCH[-PRE][+BUILD]; build metadata is ignored.
type version struct {
	n   [3]uint64
	pre []string
}

func parseVersion(s string) (version, error) {
	var v version
	rest, _, _ := strings.Cut(s, "+")
	rest, pre, hasPre := strings.Cut(rest, "-")
	if hasPre {
		if pre == "" {
			return v, fmt.Errorf("%w %q: empty pre-release", ErrBadVersion, s)
		}
		v.pre = strings.Split(pre, ".")
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("%w %q: want MAJOR.MINOR.PATCH such as 1.0.0", ErrBadVersion, s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || p == "" || p[0] == '+' {
			return v, fmt.Errorf("%w %q: %q is not a number", ErrBadVersion, s, p)
		}
		v.n[i] = n
	}
	return v, nil
}

func (a version) compare(b version) int {
	for i := range a.n {
		if a.n[i] != b.n[i] {
			if a.n[i] < b.n[i] {
				return -1
			}
			return 1
		}
	}
	// A pre-release sorts before its release; identifiers compare numerically when both are numbers.
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				if xn < yn {
					return -1
				}
				return 1
			}
		case xerr == nil:
			return -1
		case yerr == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return len(a.pre) - len(b.pre)
}

// CompareVersions returns -1, 0 or +1 as a is older than, the same as or newer than b.
func CompareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.compare(vb), nil
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
		if pv.compare(lo) < 0 {
			return false, nil
		}
	}
	if maxFrom == "" {
		hi, err := parseVersion(to)
		if err != nil {
			return false, err
		}
		return pv.compare(hi) < 0, nil
	}
	hi, inclusive, err := upperBound(maxFrom)
	if err != nil {
		return false, fmt.Errorf("max_from: %w", err)
	}
	if hi == nil {
		return true, nil
	}
	c := pv.compare(*hi)
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
	var v version
	for i := 0; i < wild; i++ {
		n, err := strconv.ParseUint(parts[i], 10, 64)
		if err != nil || i > 2 {
			return nil, false, fmt.Errorf("%w %q: want a version such as 2.9.4 or 2.9.x", ErrBadVersion, s)
		}
		v.n[i] = n
	}
	v.n[wild-1]++
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
