package deb

import (
	"fmt"
	"strings"
)

// CompareVersions compares two Debian package versions ([epoch:]upstream[-revision]) the way dpkg
// does: -1, 0 or +1.
func CompareVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if c := cmpNum(ea, eb); c != 0 {
		return c
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

// Satisfies reports whether version v satisfies the relation "op want" (=, >=, <=, >>, <<).
func Satisfies(v, op, want string) bool {
	c := CompareVersions(v, want)
	switch op {
	case "=":
		return c == 0
	case ">=":
		return c >= 0
	case "<=", "<":
		return c <= 0
	case ">>", ">":
		return c > 0
	case "<<":
		return c < 0
	}
	return true
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

func cmpNum(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// order is dpkg's character weight: '~' sorts before everything, even the end of the string;
// letters before non-letters.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return int(c)
	case c == '~':
		return -1
	case c != 0:
		return int(c) + 256
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// verrevcmp is dpkg's comparison of an upstream version or revision.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	at := func(s string, k int) byte {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if i < len(a) && isDigit(a[i]) {
				ac = 0
			}
			if j < len(b) && isDigit(b[j]) {
				bc = 0
			}
			if ac != bc {
				if ac < bc {
					return -1
				}
				return 1
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		first := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if first != 0 {
			if first < 0 {
				return -1
			}
			return 1
		}
	}
	return 0
}

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
