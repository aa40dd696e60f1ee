package recipe

import "strings"

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
