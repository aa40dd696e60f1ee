package units

import "testing"

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		n            int64
		decimal, bin string
	}{
		{0, "0 B", "0 B"},
		{999, "999 B", "999 B"},
		{1000, "1 kB", "1000 B"},
		{1536, "1.5 kB", "1.5 KiB"},
		{512 << 20, "536.9 MB", "512 MiB"},
		{16_000_000_000, "16 GB", "14.9 GiB"},
	} {
		if got := Decimal(tc.n); got != tc.decimal {
			t.Errorf("Decimal(%d) = %q, want %q", tc.n, got, tc.decimal)
		}
		if got := Binary(tc.n); got != tc.bin {
			t.Errorf("Binary(%d) = %q, want %q", tc.n, got, tc.bin)
		}
	}
}
