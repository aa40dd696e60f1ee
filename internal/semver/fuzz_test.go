package semver

import (
	"errors"
	"testing"
)

// FuzzVersion: Parse never panics, accepts only the SemVer alphabet, round-trips through
// String, and Compare is a total order consistent with it.
func FuzzVersion(f *testing.F) {
	for _, s := range [][2]string{
		{"1.0.0", "1.0.0-rc.1"}, {"2.0.0-x/../../ESCAPED", "2.0.0"}, {"1.0.0+build", "1.0.0"},
		{"01.0.0", "1.0.0"}, {"1.0.0-beta.11", "1.0.0-beta.2"}, {"1.0.0-0a", "1.0.0-00"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, erra := Parse(a)
		vb, errb := Parse(b)
		for _, e := range []error{erra, errb} {
			if e != nil && !errors.Is(e, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", e)
			}
		}
		if erra != nil {
			return
		}
		for i := 0; i < len(a); i++ {
			c := a[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '+') {
				t.Fatalf("Parse(%q) accepted %q", a, c)
			}
		}
		if va.String() != a {
			t.Fatalf("Parse(%q).String() = %q", a, va.String())
		}
		if va.Compare(va) != 0 {
			t.Fatalf("%q is not equal to itself", a)
		}
		if errb != nil {
			return
		}
		ab, ba := va.Compare(vb), vb.Compare(va)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ab == 0 && (va.Major != vb.Major || va.Minor != vb.Minor || va.Patch != vb.Patch || len(va.Pre) != len(vb.Pre)) {
			t.Fatalf("%q and %q compare equal", a, b)
		}
		// Transitivity through a third version derived from both.
		vc := Version{Major: va.Major, Minor: vb.Minor, Patch: va.Patch, Pre: vb.Pre}
		if ab <= 0 && vb.Compare(vc) <= 0 && va.Compare(vc) > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, vc, a, vc)
		}
	})
}
