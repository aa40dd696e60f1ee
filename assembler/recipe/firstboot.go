package recipe

import (
	"errors"
	"fmt"
	"strings"
)

// CheckFirstBoot checks first-boot settings given outside a recipe file (for a third-party image at
// flash time) with the rules a recipe's [system] follows: an optional hostname, the timezone, users
// with their password hashes and keys, and Wi-Fi. It returns an *Error naming the recipe fields, or nil.
func CheckFirstBoot(s System) error {
	v := &validator{r: &Recipe{System: s}}
	if s.Hostname != "" && !validHostname(s.Hostname) {
		v.add("system.hostname", "use letters, digits and '-' (1–63 per label, not starting or ending with '-'), such as \"kiln-demo\"",
			"bad hostname %q", s.Hostname)
	}
	v.firstBoot(s)
	if len(v.probs) > 0 {
		return newError("", v.probs)
	}
	return nil
}

// CheckAuthorizedKey checks one authorized_keys line ([options] type base64 [comment]).
func CheckAuthorizedKey(line string) error { return checkAuthorizedKey(strings.TrimSpace(line)) }

// ParseAuthorizedKeys returns the public keys of an authorized_keys or .pub file, one per line;
// blank lines and # comments are skipped and every key is checked as a recipe's ssh_keys are.
func ParseAuthorizedKeys(data []byte) ([]string, error) {
	var keys []string
	for i, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := checkAuthorizedKey(l); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, l)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key in the file")
	}
	return keys, nil
}
