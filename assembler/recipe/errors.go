package recipe

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kilnproject/kiln/assembler/internal/tomllines"
)

// Problem is one thing wrong with a recipe.
type Problem struct {
	File  string // recipe file; "" for a recipe not read from a file
	Line  int    // 1-based; 0 when unknown (a field the file does not set)
	Field string // dotted path: "board.disk_size", "system.users[1].name"
	Msg   string // what is wrong
	Hint  string // what to do about it; may be empty
}

// String formats the problem as "file:line: field: message; hint".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Hint != "" {
		b.WriteString("; ")
		b.WriteString(p.Hint)
	}
	return b.String()
}

// Pos returns where the recipe sets field, as "file:line: field" (the parts it knows), for
// messages about the field found after validation, such as an input that cannot be read.
func (r *Recipe) Pos(field string) string {
	p := Problem{File: r.Path, Line: tomllines.LineOf(r.lines, field), Field: field}
	return strings.TrimSuffix(p.String(), ": ")
}

// Error lists every problem found in a recipe, in file order. errors.Is(err, ErrInvalid) holds.
type Error struct {
	File     string
	Problems []Problem
}

// Error returns the problems one per line; several are introduced by a count.
func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "recipe"
	}
	fmt.Fprintf(&b, "%s: %d problems:", name, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func newError(file string, ps []Problem) *Error {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 {
			li = 1 << 30
		}
		if lj == 0 {
			lj = 1 << 30
		}
		return li < lj
	})
	return &Error{File: file, Problems: ps}
}

// IncompatibleError reports a recipe format version outside the range this Kiln supports.
// errors.Is(err, ErrIncompatible) holds.
type IncompatibleError struct {
	File     string
	Line     int
	Format   int
	Min, Max int
}

func (e *IncompatibleError) Error() string {
	hint := "install a newer kiln to build it"
	if e.Format < e.Min {
		hint = fmt.Sprintf("convert it to format %d", e.Max)
	}
	return fmt.Sprintf("%s:%d: recipe format %d is not supported by this kiln (supports %d–%d); %s",
		e.File, e.Line, e.Format, e.Min, e.Max, hint)
}

// Is reports whether target is ErrIncompatible.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }
