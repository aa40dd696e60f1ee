package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

const maxLongName = 255 // UTF-16 code units

// NT case flags in a directory entry's reserved byte: the 8.3 name is shown in lower case.
const (
	lowerBase = 0x08
	lowerExt  = 0x10
)

// checkLongName reports why name cannot be a FAT long file name, or nil.
func checkLongName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q is not a file name", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%q is not valid UTF-8", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("%q ends in a dot or space, which FAT drops: rename it", name)
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("%q contains %q, which FAT does not allow in names: rename it", name, r)
		}
	}
	if n := len(utf16.Encode([]rune(name))); n > maxLongName {
		return fmt.Errorf("%q is %d UTF-16 units long, FAT allows %d: shorten it", name, n, maxLongName)
	}
	return nil
}

// foldName is the key under which FAT compares names: case-insensitively.
func foldName(name string) string { return strings.Map(unicode.ToUpper, name) }

// shortChar reports whether c may appear in an 8.3 name as it is (after upper-casing).
func shortChar(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c >= 0x80 || c < 0x20:
		return false
	}
	return strings.IndexByte("$%'-_@~`!(){}^#&", c) >= 0
}

// basis derives the 8.3 basis name of a long name after fatgen103: upper-cased, spaces and leading
// dots dropped, characters an 8.3 name cannot hold replaced by '_', the primary part cut at the first
// dot and 8 characters, the extension taken after the last dot and cut at 3. lossy reports that
// anything was replaced, dropped or cut, so that the long name cannot be rebuilt from the basis.
func basis(name string) (base, ext string, lossy bool) {
	conv := func(s string, limit int) string {
		var b strings.Builder
		for _, r := range s {
			switch {
			case r == ' ' || r == '.':
				lossy = true
				continue
			case r < utf8.RuneSelf && shortChar(byte(unicode.ToUpper(r))):
				if b.Len() == limit {
					lossy = true
					continue
				}
				b.WriteByte(byte(unicode.ToUpper(r)))
			default:
				if b.Len() == limit {
					lossy = true
					continue
				}
				lossy = true
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	trimmed := strings.TrimLeft(name, ". ")
	if trimmed != name {
		lossy = true
	}
	primary, extension := trimmed, ""
	if i := strings.LastIndexByte(trimmed, '.'); i >= 0 {
		primary, extension = trimmed[:i], trimmed[i+1:]
	}
	if i := strings.IndexByte(primary, '.'); i >= 0 {
		primary, lossy = primary[:i], true
	}
	return conv(primary, 8), conv(extension, 3), lossy
}

// caseFlags reports whether part is written in a single case: its NT case flag (flag when all its
// letters are lower case, 0 when upper case or when it has none) and ok=false for mixed case.
func caseFlags(part string, flag byte) (byte, bool) {
	upper, lower := false, false
	for _, r := range part {
		upper = upper || unicode.IsUpper(r)
		lower = lower || unicode.IsLower(r)
	}
	switch {
	case upper && lower:
		return 0, false
	case lower:
		return flag, true
	}
	return 0, true
}

// shortName is an 8.3 name as stored: base and extension padded with spaces.
type shortName [11]byte

func makeShort(base, ext string) shortName {
	var s shortName
	for i := range s {
		s[i] = ' '
	}
	copy(s[:8], base)
	copy(s[8:], ext)
	return s
}

func (s shortName) checksum() byte {
	var sum byte
	for _, c := range s {
		sum = (sum>>1 | sum<<7) + c
	}
	return sum
}

// nameEntry is how one child is named in its directory.
type nameEntry struct {
	short shortName
	flags byte     // NT case flags, when the short name alone stands for the name
	long  []uint16 // the UTF-16 long name, nil when the short name suffices
}

// slots is the number of 32-byte directory entries the name takes.
func (n nameEntry) slots() int { return 1 + (len(n.long)+12)/13 }

// assignNames gives each of a directory's names (already checked and case-insensitively unique) an
// 8.3 name unique in the directory. Names that are valid 8.3 names in one case per part are stored as
// 8.3 only, with NT case flags, as Windows and Linux do; the rest get a long name, and a numeric tail
// (~1, ~2 …) on the basis when the basis was lossy or is taken. Exact 8.3 names are placed first so
// that a generated name never takes one.
func assignNames(names []string) ([]nameEntry, error) {
	out := make([]nameEntry, len(names))
	used := make(map[shortName]bool, len(names))
	type pending struct {
		i         int
		base, ext string
		needsTail bool
	}
	var rest []pending
	for i, name := range names {
		base, ext, lossy := basis(name)
		if !lossy {
			orig, origExt := name, ""
			if j := strings.LastIndexByte(name, '.'); j >= 0 {
				orig, origExt = name[:j], name[j+1:]
			}
			fb, okb := caseFlags(orig, lowerBase)
			fe, oke := caseFlags(origExt, lowerExt)
			if s := makeShort(base, ext); okb && oke && !used[s] {
				used[s] = true
				out[i] = nameEntry{short: s, flags: fb | fe}
				continue
			}
		}
		rest = append(rest, pending{i: i, base: base, ext: ext, needsTail: lossy})
	}
	lastTail := map[[2]string]int{} // per basis, the last tail number taken: later ones start above it
	for _, p := range rest {
		e := nameEntry{long: utf16.Encode([]rune(names[p.i]))}
		if s := makeShort(p.base, p.ext); !p.needsTail && !used[s] {
			e.short = s
		} else {
			found := false
			key := [2]string{p.base, p.ext}
			for n := lastTail[key] + 1; n <= 999999; n++ {
				tail := "~" + strconv.Itoa(n)
				b := p.base
				if len(b)+len(tail) > 8 {
					b = b[:8-len(tail)]
				}
				if s := makeShort(b+tail, p.ext); !used[s] {
					e.short, found = s, true
					lastTail[key] = n
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("%q: no free 8.3 name left for it in its directory", names[p.i])
			}
		}
		used[e.short] = true
		out[p.i] = e
	}
	return out, nil
}
