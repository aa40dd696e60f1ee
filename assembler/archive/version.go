package archive

import (
	"fmt"
	"strings"
)

// CheckVersion reports whether v is a well-formed Debian version: [epoch:]upstream[-revision],
// epoch digits, upstream starting with a digit and made of [A-Za-z0-9.+~-:], revision of
// [A-Za-z0-9.+~].
func CheckVersion(v string) error {
	if v == "" || len(v) > 256 {
		return fmt.Errorf("version %.40q: empty or over 256 bytes", v)
	}
	epoch, up, rev := splitVersion(v)
	if strings.Contains(v, ":") {
		if epoch == "" || strings.Trim(epoch, "0123456789") != "" {
			return fmt.Errorf("version %q: epoch must be digits", v)
		}
	}
	if up == "" || up[0] < '0' || up[0] > '9' {
		return fmt.Errorf("version %q: upstream version must start with a digit", v)
	}
	for i := 0; i < len(up); i++ {
		if c := up[i]; !alnum(c) && !strings.ContainsRune(".+~-:", rune(c)) {
			return fmt.Errorf("version %q: character %q not allowed", v, c)
		}
	}
	if strings.Contains(v, "-") && rev == "" {
		return fmt.Errorf("version %q: empty revision", v)
	}
	for i := 0; i < len(rev); i++ {
		if c := rev[i]; !alnum(c) && !strings.ContainsRune(".+~", rune(c)) {
			return fmt.Errorf("version %q: character %q not allowed in the revision", v, c)
		}
	}
	return nil
}

func alnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func splitVersion(v string) (epoch, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, v = v[:i], v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// CompareVersions orders two Debian versions as dpkg does: -1, 0 or +1. Malformed versions are
// compared by the same rules, so the order is total for any strings.
func CompareVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if c := compareNum(ea, eb); c != 0 {
		return c
	}
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(ra, rb)
}

// order is dpkg's weight of a non-digit character: '~' before everything, even the end of the
// string; letters before other characters.
func order(c byte) int {
	switch {
	case c == '~':
		return -1
	case '0' <= c && c <= '9':
		return 0
	case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		return int(c)
	default:
		return int(c) + 256
	}
}

func compareFragment(a, b string) int {
	for a != "" || b != "" {
		// Non-digit prefix, compared character by character.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			var ca, cb int
			if a != "" {
				ca = order(a[0])
			}
			if b != "" {
				cb = order(b[0])
			}
			if ca != cb {
				return sign(ca - cb)
			}
			a, b = a[1:], b[1:]
		}
		// Digit run, compared numerically.
		na, nb := digitRun(a), digitRun(b)
		if c := compareNum(a[:na], b[:nb]); c != 0 {
			return c
		}
		a, b = a[na:], b[nb:]
	}
	return 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// compareNum compares two runs of digits of any length numerically; an empty run is 0. A
// malformed epoch (not all digits) sorts after every numeric one, by its bytes, so the order stays
// total.
func compareNum(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	da, db := digitRun(a) == len(a), digitRun(b) == len(b)
	switch {
	case da && db && len(a) != len(b):
		return sign(len(a) - len(b))
	case da && !db:
		return -1
	case !da && db:
		return 1
	}
	return strings.Compare(a, b)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
