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
