package assembler_test

import (
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler"
)

func TestLicenses(t *testing.T) {
	const dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
	for _, tc := range []struct{ name, in, want string }{
		{"dep5", dep5 + "Files: *\nCopyright: x\nLicense: GPL-2+\n text\n .\n more\n\nFiles: a/*\nLicense: BSD-3-clause\n\nLicense: GPL-2+\n full text\n", "GPL-2+,BSD-3-clause"},
		{"expression", dep5 + "Files: *\nLicense: GPL-2+ or Artistic\n", "GPL-2+ or Artistic"},
		{"not machine-readable", "This package was debianized by someone.\n\nLicense: GPL\n", ""},
		{"syntax error after a licence", dep5 + "Files: *\nLicense: MIT\n\nnot a field\n", "MIT"},
		{"empty", "", ""},
	} {
		if got := strings.Join(assembler.Licenses([]byte(tc.in)), ","); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzLicenses reads arbitrary copyright files: never a panic, every name one non-empty line.
func FuzzLicenses(f *testing.F) {
	f.Add([]byte("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n text\n"))
	f.Add([]byte("Format: copyright-format\nLicense: MIT\n\nLicense: MIT\n\n#c\nLicense:\n x\n"))
	f.Add([]byte("plain text\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range assembler.Licenses(data) {
			if l == "" || strings.ContainsAny(l, "\n") || len(l) > 200 {
				t.Fatalf("licence name %q", l)
			}
		}
	})
}
