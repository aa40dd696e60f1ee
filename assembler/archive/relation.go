package archive

import (
	"fmt"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
)

// Op is a version relation operator.
type Op string

// The operators of Debian relations; "<" and ">" are the deprecated spellings of "<=" and ">=".
const (
	OpAny Op = ""
	OpLT  Op = "<<"
	OpLE  Op = "<="
	OpEQ  Op = "="
	OpGE  Op = ">="
	OpGT  Op = ">>"
)

// Dep is one alternative of a relation: a package name with an optional architecture
// qualifier (":any", ":native" or an architecture), version constraint and architecture
// restriction list ("[amd64 !i386]"). Build profiles ("<!nocheck>") are parsed and dropped:
// they do not apply to binary packages.
type Dep struct {
	Name    string
	ArchQ   string
	Op      Op
	Version string
	Arches  []string
}

// Relation is a list of alternatives ("a | b"); any one satisfies it.
type Relation []Dep

func (d Dep) String() string {
	s := d.Name
	if d.ArchQ != "" {
		s += ":" + d.ArchQ
	}
	if d.Op != OpAny {
		s += " (" + string(d.Op) + " " + d.Version + ")"
	}
	if len(d.Arches) > 0 {
		s += " [" + strings.Join(d.Arches, " ") + "]"
	}
	return s
}

func (r Relation) String() string {
	parts := make([]string, len(r))
	for i, d := range r {
		parts[i] = d.String()
	}
	return strings.Join(parts, " | ")
}

// ParseRelations parses a comma-separated relation field (Depends, Conflicts, a request list).
// Empty entries (a trailing comma) are allowed, as dpkg allows them.
func ParseRelations(s string) ([]Relation, error) {
	var out []Relation
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var rel Relation
		for _, alt := range strings.Split(part, "|") {
			d, err := ParseDep(alt)
			if err != nil {
				return nil, err
			}
			rel = append(rel, d)
		}
		out = append(out, rel)
	}
	return out, nil
}

// ParseDep parses one alternative: name[:arch] [(op version)] [[arch ...]] [<profile ...>...].
func ParseDep(s string) (Dep, error) {
	orig := s
	s = strings.TrimSpace(s)
	var d Dep
	n := 0
	for n < len(s) && !strings.ContainsRune(" \t\n([<", rune(s[n])) {
		n++
	}
	d.Name, s = s[:n], strings.TrimSpace(s[n:])
	if i := strings.IndexByte(d.Name, ':'); i >= 0 {
		d.Name, d.ArchQ = d.Name[:i], d.Name[i+1:]
		if !validArch(d.ArchQ) {
			return Dep{}, fmt.Errorf("relation %.60q: bad architecture qualifier %q", orig, d.ArchQ)
		}
	}
	if !validName(d.Name) {
		return Dep{}, fmt.Errorf("relation %.60q: bad package name %.40q", orig, d.Name)
	}
	if strings.HasPrefix(s, "(") {
		end := strings.IndexByte(s, ')')
		if end < 0 {
			return Dep{}, fmt.Errorf("relation %.60q: missing ')'", orig)
		}
		inner := strings.TrimSpace(s[1:end])
		s = strings.TrimSpace(s[end+1:])
		op := 0
		for op < len(inner) && strings.ContainsRune("<>=", rune(inner[op])) {
			op++
		}
		switch Op(inner[:op]) {
		case OpLT, OpLE, OpEQ, OpGE, OpGT:
			d.Op = Op(inner[:op])
		case "<":
			d.Op = OpLE
		case ">":
			d.Op = OpGE
		default:
			return Dep{}, fmt.Errorf("relation %.60q: bad operator %q", orig, inner[:op])
		}
		d.Version = strings.TrimSpace(inner[op:])
		if err := deb.CheckVersion(d.Version); err != nil {
			return Dep{}, fmt.Errorf("relation %.60q: %w", orig, err)
		}
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Dep{}, fmt.Errorf("relation %.60q: missing ']'", orig)
		}
		d.Arches = strings.Fields(s[1:end])
		if len(d.Arches) == 0 {
			return Dep{}, fmt.Errorf("relation %.60q: empty architecture list", orig)
		}
		for _, a := range d.Arches {
			if !validArch(strings.TrimPrefix(a, "!")) || strings.HasPrefix(a, "!") != strings.HasPrefix(d.Arches[0], "!") {
				return Dep{}, fmt.Errorf("relation %.60q: bad architecture %q (all or none negated)", orig, a)
			}
		}
		s = strings.TrimSpace(s[end+1:])
	}
	for strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return Dep{}, fmt.Errorf("relation %.60q: missing '>'", orig)
		}
		s = strings.TrimSpace(s[end+1:])
	}
	if s != "" {
		return Dep{}, fmt.Errorf("relation %.60q: unexpected %.20q", orig, s)
	}
	return d, nil
}

// ForArch reports whether the dependency applies on arch (its [arch] list, if any).
func (d Dep) ForArch(arch string) bool {
	if len(d.Arches) == 0 {
		return true
	}
	neg := strings.HasPrefix(d.Arches[0], "!")
	for _, a := range d.Arches {
		if strings.TrimPrefix(a, "!") == arch {
			return !neg
		}
	}
	return neg
}

// validName: Debian package names are [a-z0-9][a-z0-9+.-]+ (one character is tolerated).
func validName(s string) bool {
	if s == "" || len(s) > 128 || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' }

func validArch(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}
