// Package semver parses and orders Semantic Versions 2.0.0 (https://semver.org):
// MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], numeric identifiers without leading zeros,
// identifiers of ASCII letters, digits and '-'. It is the one version syntax of Kiln: recipes,
// update bundles, published targets and the device agent all check versions here, so a
// version is also safe to use in a file name.
package semver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen bounds a version string; longer ones are refused.
const MaxLen = 128

// ErrInvalid: a string is not a semantic version.
var ErrInvalid = errors.New("bad version")

// Version is a parsed semantic version.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string // dot-separated pre-release identifiers
	Build               string   // build metadata, ignored by Compare
}

func invalid(s, format string, args ...any) error {
	return fmt.Errorf("%w %.40q: %s", ErrInvalid, s, fmt.Sprintf(format, args...))
}

// Parse parses s, which must be a complete semantic version.
func Parse(s string) (Version, error) {
	var v Version
	if len(s) > MaxLen {
		return v, invalid(s, "longer than %d characters", MaxLen)
	}
	rest, build, hasBuild := strings.Cut(s, "+")
	if hasBuild {
		if err := identifiers(build, false); err != nil {
			return Version{}, invalid(s, "build metadata after '+': %v", err)
		}
		v.Build = build
	}
	rest, pre, hasPre := strings.Cut(rest, "-")
	if hasPre {
		if err := identifiers(pre, true); err != nil {
			return Version{}, invalid(s, "pre-release after '-': %v (use letters, digits and '-' between dots)", err)
		}
		v.Pre = strings.Split(pre, ".")
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return Version{}, invalid(s, "want MAJOR.MINOR.PATCH such as 1.0.0")
	}
	for i, p := range parts {
		if !numeric(p) || (len(p) > 1 && p[0] == '0') {
			return Version{}, invalid(s, "%.20q is not a number without leading zeros", p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Version{}, invalid(s, "%.20q is too large", p)
		}
		*[]*uint64{&v.Major, &v.Minor, &v.Patch}[i] = n
	}
	return v, nil
}

// Check returns an error unless s is a semantic version.
func Check(s string) error {
	_, err := Parse(s)
	return err
}

func numeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// identifiers checks dot-separated identifiers; pre-release numbers have no leading zeros.
func identifiers(s string, pre bool) error {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return errors.New("empty identifier")
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
		if pre && numeric(id) && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("%.20q has a leading zero", id)
		}
	}
	return nil
}

// String formats v; Parse(v.String()) gives v back.
func (v Version) String() string {
	s := strconv.FormatUint(v.Major, 10) + "." + strconv.FormatUint(v.Minor, 10) + "." + strconv.FormatUint(v.Patch, 10)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare returns -1, 0 or +1 as v has lower, equal or higher precedence than w.
func (v Version) Compare(w Version) int {
	for _, d := range [][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if c := cmp(d[0], d[1]); c != 0 {
			return c
		}
	}
	switch {
	case len(v.Pre) == 0 && len(w.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1 // a release sorts after its pre-releases
	case len(w.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(w.Pre); i++ {
		if c := compareIdent(v.Pre[i], w.Pre[i]); c != 0 {
			return c
		}
	}
	return cmp(len(v.Pre), len(w.Pre))
}

func compareIdent(a, b string) int {
	na, nb := numeric(a), numeric(b)
	switch {
	case na && nb:
		// Without leading zeros a longer number is larger, also beyond 64 bits.
		if c := cmp(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	case na:
		return -1 // numeric identifiers sort before alphanumeric ones
	case nb:
		return 1
	}
	return strings.Compare(a, b)
}

func cmp[T int | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Compare parses a and b and compares them by precedence.
func Compare(a, b string) (int, error) {
	va, err := Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}
