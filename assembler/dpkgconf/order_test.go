package dpkgconf

import (
	"strings"
	"testing"
)

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Package
		want string
	}{
		{"pre-depends first", []Package{{Name: "c", Depends: "b"}, {Name: "b", PreDepends: "a"}, {Name: "a"}}, "a b c"},
		{"alternatives take the one present", []Package{{Name: "x", Depends: "missing | z (>= 1)"}, {Name: "z"}}, "z x"},
		{"cycle broken by name", []Package{{Name: "q", Depends: "p"}, {Name: "p", Depends: "q"}}, "q p"},
		{"unrelated by name", []Package{{Name: "n"}, {Name: "m"}}, "m n"},
		{"bad field ignored", []Package{{Name: "a", Depends: "(((("}, {Name: "b"}}, "a b"},
	} {
		var got []string
		for _, p := range order(tc.in) {
			got = append(got, p.Name)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: order %q, want %q", tc.name, g, tc.want)
		}
	}
}
