package assembler

import (
	"regexp"
	"testing"
)

func TestStableGUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-8[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	seen := map[string]string{}
	for _, name := range []string{"kiln-tiny", "garden", "kiln-tinyx"} {
		for _, purpose := range []string{"disk", "esp", "data"} {
			g := stableGUID(name, purpose)
			if !re.MatchString(g) {
				t.Errorf("stableGUID(%q, %q) = %s: not an RFC 9562 version 8 UUID", name, purpose, g)
			}
			if g != stableGUID(name, purpose) {
				t.Errorf("stableGUID(%q, %q) is not stable", name, purpose)
			}
			key := name + "/" + purpose
			if prev, dup := seen[g]; dup {
				t.Errorf("%s and %s share GUID %s", prev, key, g)
			}
			seen[g] = key
		}
	}
}
