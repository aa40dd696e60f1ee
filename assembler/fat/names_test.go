package fat

import (
	"strings"
	"testing"
	"unicode/utf16"
)

func TestAssignNames(t *testing.T) {
	type want struct {
		short string // base and extension as stored, e.g. "README  TXT"
		flags byte
		long  bool
	}
	tests := []struct {
		name  string
		names []string
		want  []want
	}{
		{"upper 8.3 stays short", []string{"BOOTX64.EFI", "EFI"}, []want{{"BOOTX64 EFI", 0, false}, {"EFI        ", 0, false}}},
		{"lower 8.3 uses case flags", []string{"readme.txt", "linux", "a.B"}, []want{
			{"README  TXT", lowerBase | lowerExt, false}, {"LINUX      ", lowerBase, false}, {"A       B  ", lowerBase, false}}},
		{"mixed case gets a long name without tail", []string{"ReadMe.txt"}, []want{{"README  TXT", 0, true}}},
		{"long name gets a tail", []string{"loader.conf", "kiln-tiny-1.0.0.efi"}, []want{
			{"LOADER~1CON", 0, true}, {"KILN-T~1EFI", 0, true}}},
		{"tails count up", []string{"longfilename1.txt", "longfilename2.txt", "longfilename3.txt"}, []want{
			{"LONGFI~1TXT", 0, true}, {"LONGFI~2TXT", 0, true}, {"LONGFI~3TXT", 0, true}}},
		{"exact names win over generated ones", []string{"abcdefghij", "ABCDEF~1"}, []want{
			{"ABCDEF~2   ", 0, true}, {"ABCDEF~1   ", 0, false}}},
		{"leading dot and spaces", []string{".bashrc", "my file"}, []want{{"BASHRC~1   ", 0, true}, {"MYFILE~1   ", 0, true}}},
		{"invalid short characters", []string{"a+b.c", "ünï.txt"}, []want{{"A_B~1   C  ", 0, true}, {"_N_~1   TXT", 0, true}}},
		{"several dots", []string{"archive.tar.gz"}, []want{{"ARCHIV~1GZ ", 0, true}}},
		{"mixed case clash gets a tail", []string{"MAKEFILE", "Makefile2", "MakeFile"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := assignNames(tc.names)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[shortName]bool{}
			for i, g := range got {
				if seen[g.short] {
					t.Errorf("%q: short name %q is used twice", tc.names[i], g.short[:])
				}
				seen[g.short] = true
				if g.long != nil && string(utf16.Decode(g.long)) != tc.names[i] {
					t.Errorf("%q: long name %q", tc.names[i], string(utf16.Decode(g.long)))
				}
				if tc.want == nil {
					continue
				}
				w := tc.want[i]
				if string(g.short[:]) != w.short || g.flags != w.flags || (g.long != nil) != w.long {
					t.Errorf("%q: got short %q flags %#x long %v, want %q %#x %v",
						tc.names[i], g.short[:], g.flags, g.long != nil, w.short, w.flags, w.long)
				}
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	// The long-name checksum of "README  TXT", computed by hand with the rotate-right-and-add rule.
	var sum byte
	for _, c := range []byte("README  TXT") {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	if got := makeShort("README", "TXT").checksum(); got != sum {
		t.Fatalf("checksum %#x, want %#x", got, sum)
	}
}

func TestCheckLongName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a:b", "a*", "trail.", "trail ", "tab\there", strings.Repeat("x", 256), "bad\xffutf8"} {
		if checkLongName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"a", "BOOTX64.EFI", "a b c.d e", strings.Repeat("x", 255), "日本語.txt", "#[]+;=,.x"} {
		if err := checkLongName(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

func TestGeometry(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		size    int64
		cluster int64
	}{
		{33 * MiB, 512},
		{192 * MiB, 512},
		{261 * MiB, 4096},
		{319 * MiB, 4096},
		{2048 * MiB, 4096},
		{10 << 30, 8192},
		{20 << 30, 16384},
		{40 << 30, 32768},
	}
	for _, tc := range tests {
		g, err := newGeometry(tc.size, 0)
		if err != nil {
			t.Errorf("%d MiB: %v", tc.size/MiB, err)
			continue
		}
		if g.clusterBytes() != tc.cluster {
			t.Errorf("%d MiB: cluster %d, want %d", tc.size/MiB, g.clusterBytes(), tc.cluster)
		}
		if g.clusters < minClusters || uint64(g.fatSectors)*128 < uint64(g.clusters)+2 {
			t.Errorf("%d MiB: %d clusters, FAT of %d sectors", tc.size/MiB, g.clusters, g.fatSectors)
		}
		if g.dataStart()%g.clusterBytes() != 0 || g.dataStart()%4096 != 0 {
			t.Errorf("%d MiB: data area at %d is not aligned", tc.size/MiB, g.dataStart())
		}
		if end := g.dataStart() + int64(g.clusters)*g.clusterBytes(); end > tc.size {
			t.Errorf("%d MiB: data ends at %d, past the volume", tc.size/MiB, end)
		}
	}
	if _, err := newGeometry(16*MiB, 0); err == nil || !strings.Contains(err.Error(), "FAT32 needs at least 65525") {
		t.Errorf("16 MiB volume: %v", err)
	}
	if _, err := newGeometry(64*MiB, 3000); err == nil {
		t.Error("cluster size 3000 accepted")
	}
}
