package rpiboot

import (
	"errors"
	"testing"
)

func TestAutobootEncode(t *testing.T) {
	want := "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
	if got := string(Autoboot{Boot: 2, Try: 3}.Encode()); got != want {
		t.Fatalf("Encode = %q, want %q", got, want)
	}
	a, err := ParseAutoboot([]byte(want))
	if err != nil || a != (Autoboot{Boot: 2, Try: 3}) {
		t.Fatalf("ParseAutoboot = %+v, %v", a, err)
	}
	if a.Other(2) != 3 || a.Other(3) != 2 {
		t.Fatalf("Other: %d %d", a.Other(2), a.Other(3))
	}
}

func TestParseAutoboot(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Autoboot
		ok   bool
	}{
		// The example of the Raspberry Pi documentation, with comments and a model filter.
		{"# A/B\n[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n", Autoboot{2, 3}, true},
		{"tryboot_a_b=1\nboot_partition=3 # committed\n[pi4]\nboot_partition=9\n[tryboot]\nboot_partition=2\n", Autoboot{3, 2}, true},
		{"[all]\r\ntryboot_a_b=1\r\nboot_partition=2\r\n[TRYBOOT]\r\nboot_partition=3\r\n", Autoboot{2, 3}, true},
		{"[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n", Autoboot{}, false},                // no tryboot_a_b
		{"[all]\ntryboot_a_b=1\n[tryboot]\nboot_partition=3\n", Autoboot{}, false},                   // no default
		{"[all]\ntryboot_a_b=1\nboot_partition=2\n", Autoboot{}, false},                              // no trial
		{"[all]\ntryboot_a_b=1\nboot_partition=x\n[tryboot]\nboot_partition=3\n", Autoboot{}, false}, // not a number
		{"[all]\ntryboot_a_b=1\nboot_partition=0\n[tryboot]\nboot_partition=3\n", Autoboot{}, false},
		{"garbage\n", Autoboot{}, false},
		{"", Autoboot{}, false},
	} {
		got, err := ParseAutoboot([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseAutoboot(%q) = %+v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrAutoboot) {
			t.Errorf("ParseAutoboot(%q): error %v does not wrap ErrAutoboot", tc.in, err)
		}
	}
	if _, err := ParseAutoboot(make([]byte, MaxAutoboot+1)); err == nil {
		t.Error("an oversized file parsed")
	}
}

// FuzzAutoboot: any input parses or fails cleanly; what parses re-encodes to the same slots.
func FuzzAutoboot(f *testing.F) {
	f.Add([]byte("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"))
	f.Add([]byte("tryboot_a_b=1\nboot_partition=3\n[pi4]\nboot_partition=9\n[tryboot]\nboot_partition=2 # x\n"))
	f.Add([]byte("[all\n=\n[]\nboot_partition=-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAutoboot(data)
		if err != nil {
			return
		}
		if a.Boot < 1 || a.Try < 1 || a.Boot > 127 || a.Try > 127 {
			t.Fatalf("slots out of range: %+v", a)
		}
		b, err := ParseAutoboot(a.Encode())
		if err != nil || b != a {
			t.Fatalf("round trip: %+v → %+v, %v", a, b, err)
		}
	})
}
