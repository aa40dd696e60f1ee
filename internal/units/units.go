// Package units formats and parses byte counts for people: decimal units (kB, MB, GB) the way drive
// makers label drives, binary units (KiB, MiB, GiB) for files, images and partition sizes.
package units

import "fmt"

// Decimal formats n with powers of 1000: "15.9 GB", "16 GB".
func Decimal(n int64) string { return format(n, 1000, "kMGTPE", "B") }

// Binary formats n with powers of 1024: "1.5 KiB", "512 MiB".
func Binary(n int64) string { return format(n, 1024, "KMGTPE", "iB") }

func format(n, unit int64, prefixes, suffix string) string {
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := unit, 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	if v := float64(n) / float64(div); v != float64(int64(v)) {
		return fmt.Sprintf("%.1f %c%s", v, prefixes[exp], suffix)
	}
	return fmt.Sprintf("%d %c%s", n/div, prefixes[exp], suffix)
}
