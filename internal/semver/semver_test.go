package semver

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
	}{
		{"0.0.0", Version{}},
		{"1.2.3", Version{Major: 1, Minor: 2, Patch: 3}},
		{"10.20.30", Version{Major: 10, Minor: 20, Patch: 30}},
		{"1.0.0-alpha.1", Version{Major: 1, Pre: []string{"alpha", "1"}}},
		{"1.0.0-0A.is.legal", Version{Major: 1, Pre: []string{"0A", "is", "legal"}}},
		{"1.0.0-x-y-z.--", Version{Major: 1, Pre: []string{"x-y-z", "--"}}},
		{"1.0.0+001", Version{Major: 1, Build: "001"}},
		{"1.0.0-rc.1+build.1", Version{Major: 1, Pre: []string{"rc", "1"}, Build: "build.1"}},
		{"18446744073709551615.0.0", Version{Major: 1<<64 - 1}},
	} {
		got, err := Parse(tc.in)
		if err != nil || got.String() != tc.in || got.Compare(tc.want) != 0 || got.Build != tc.want.Build {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1", "1.0", "1.0.0.0", "01.0.0", "1.01.0", "1.0.00", "v1.0.0",
		"1.a.0", " 1.0.0", "1.0.0-", "1.0.0+", "1.0.0-01", "1.0.0-a..b", "1.0.0-a_b", "1.0.0+a/b",
		"2.0.0-x/../../ESCAPED", "1.0.0-é", "-1.0.0", "+1.0.0", "1.-0.0", "18446744073709551616.0.0",
		"1.0.0-" + strings.Repeat("a", MaxLen)} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestPrecedence is the order of semver.org §11, plus build metadata and large numbers.
func TestPrecedence(t *testing.T) {
	ordered := []string{"0.0.0", "0.9.10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
		"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-beta.99999999999999999999", "1.0.0-rc.1", "1.0.0",
		"1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range ordered {
		for j := range ordered {
			c, err := Compare(ordered[i], ordered[j])
			if want := cmp(i, j); err != nil || c != want {
				t.Errorf("Compare(%q, %q) = %d, %v; want %d", ordered[i], ordered[j], c, err, want)
			}
		}
	}
	if c, err := Compare("1.0.0+build.1", "1.0.0+build.2"); c != 0 || err != nil {
		t.Errorf("build metadata changes precedence: %d, %v", c, err)
	}
	if _, err := Compare("1.0.0", "01.0.0"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compare with a bad version: %v", err)
	}
}
