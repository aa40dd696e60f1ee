package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/kilnproject/kiln/assembler/internal/suggest"
	"github.com/kilnproject/kiln/assembler/internal/tomllines"
)

// decoder overlays one TOML document onto a Recipe, collecting every problem instead of stopping at
// the first (the toml package's own struct decoding stops at the first type mismatch).
type decoder struct {
	file  string
	src   []string       // source lines
	lines map[string]int // field path → line
	probs []Problem
}

func (d *decoder) add(path, hint, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: tomllines.LineOf(d.lines, path), Field: path,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

var formatLine = regexp.MustCompile(`^\s*kiln\s*=\s*(-?[0-9]+)\s*(#.*)?$`)

// decode parses data and overlays it onto base (nil: a zero Recipe). Format-version and syntax
// errors return at once; other problems are collected into an *Error.
func decode(filename string, data []byte, base *Recipe) (*Recipe, error) {
	d := &decoder{file: filename, src: strings.Split(string(data), "\n")}

	// Fail fast on a format this Kiln does not read, before its syntax can confuse anything else.
	for i, l := range d.src {
		if strings.HasPrefix(strings.TrimSpace(l), "[") {
			break
		}
		if m := formatLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if n < MinFormat || n > MaxFormat {
				return nil, &IncompatibleError{File: filename, Line: i + 1, Format: n, Min: MinFormat, Max: MaxFormat}
			}
			break
		}
	}

	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			hint := ""
			if u := strings.TrimSpace(pe.Usage); u != "" {
				hint = strings.SplitN(u, "\n", 2)[0]
			}
			line := pe.Position.Line
			if st := pe.Position.Start; st > 0 && st <= len(data) && pe.Position.Len <= 1 {
				line = 1 + bytes.Count(data[:st], []byte("\n")) // an error at a line's end belongs to that line
			}
			return nil, newError(filename, []Problem{{File: filename, Line: line, Field: pe.LastKey,
				Msg: "TOML syntax: " + pe.Message, Hint: hint}})
		}
		return nil, newError(filename, []Problem{{File: filename, Msg: "TOML syntax: " + err.Error()}})
	}
	d.lines = tomllines.Scan(d.src)

	switch k, ok := doc["kiln"]; {
	case !ok:
		d.add("kiln", fmt.Sprintf("add `kiln = %d` as the first line", MaxFormat), "the recipe format version is missing")
	default:
		if n, isInt := k.(int64); isInt && (n < MinFormat || n > MaxFormat) {
			return nil, &IncompatibleError{File: filename, Line: tomllines.LineOf(d.lines, "kiln"), Format: int(n), Min: MinFormat, Max: MaxFormat}
		}
	}

	r := base
	if r == nil {
		r = &Recipe{}
	}
	d.table(doc, reflect.ValueOf(r).Elem(), "")
	r.Path = filename
	r.Dir = filepath.Dir(filename)
	if abs, err := filepath.Abs(r.Dir); err == nil {
		r.Dir = abs
	}
	r.lines = d.lines
	if len(d.probs) > 0 {
		return r, newError(filename, d.probs)
	}
	return r, nil
}

var (
	sizeType = reflect.TypeOf(Size(0))
	modeType = reflect.TypeOf(Mode(0))
)

// table overlays the TOML table m onto the struct v.
func (d *decoder) table(m map[string]any, v reflect.Value, path string) {
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := tomllines.LineOf(d.lines, join(path, keys[i])), tomllines.LineOf(d.lines, join(path, keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		p := join(path, k)
		i, ok := fields[k]
		if !ok {
			hint := "known fields here: " + strings.Join(names, ", ")
			if s := suggest.Closest(k, names, 1); len(s) > 0 {
				hint = fmt.Sprintf("did you mean %q?", s[0])
			}
			d.add(p, hint, "unknown field %q", k)
			continue
		}
		d.value(m[k], v.Field(i), p)
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// value assigns one TOML value to the field f, checking its type.
func (d *decoder) value(val any, f reflect.Value, path string) {
	switch f.Type() {
	case sizeType:
		switch x := val.(type) {
		case string:
			s, err := ParseSize(x)
			if err != nil {
				d.add(path, `write a number with a unit, such as "512MiB", "2G" or "0"`, "%v", err)
				return
			}
			f.SetInt(int64(s))
		case int64:
			if x < 0 {
				d.add(path, `write a number with a unit, such as "512MiB"`, "size %d is negative", x)
				return
			}
			f.SetInt(x)
		default:
			d.add(path, `write a size as a string, such as "512MiB"`, "expected a size, found %s", typeName(val))
		}
		return
	case modeType:
		switch x := val.(type) {
		case string:
			mode, err := ParseMode(x)
			if err != nil {
				d.add(path, `write the mode in octal, such as "0644" or "0755"`, "%v", err)
				return
			}
			f.SetUint(uint64(mode))
		case int64:
			if !d.octalLiteral(path) {
				d.add(path, fmt.Sprintf(`write "0%d" (a string) or 0o%d (an octal integer)`, x, x),
					"mode %d is a decimal number", x)
				return
			}
			if x < 0 || x > 0o7777 {
				d.add(path, `write the mode in octal, such as "0644"`, "mode 0o%o has bits beyond 07777", x)
				return
			}
			f.SetUint(uint64(x))
		default:
			d.add(path, `write the mode in octal, such as "0644"`, "expected a mode, found %s", typeName(val))
		}
		return
	}
	switch f.Kind() {
	case reflect.String:
		if s, ok := val.(string); ok {
			f.SetString(s)
			return
		}
		d.add(path, "put the value in double quotes", "expected a string, found %s", typeName(val))
	case reflect.Int:
		if n, ok := val.(int64); ok {
			f.SetInt(n)
			return
		}
		d.add(path, "write a whole number without quotes", "expected an integer, found %s", typeName(val))
	case reflect.Bool:
		if b, ok := val.(bool); ok {
			f.SetBool(b)
			return
		}
		d.add(path, "write true or false without quotes", "expected a boolean, found %s", typeName(val))
	case reflect.Pointer:
		if f.Type().Elem().Kind() == reflect.Int { // optional integer
			if n, ok := val.(int64); ok {
				x := int(n)
				f.Set(reflect.ValueOf(&x))
				return
			}
			d.add(path, "write a whole number without quotes", "expected an integer, found %s", typeName(val))
			return
		}
		m, ok := val.(map[string]any)
		if !ok {
			d.add(path, fmt.Sprintf("write it as a table: [%s]", path), "expected a table, found %s", typeName(val))
			return
		}
		if f.IsNil() {
			f.Set(reflect.New(f.Type().Elem()))
		}
		d.table(m, f.Elem(), path)
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			d.add(path, fmt.Sprintf("write it as a table: [%s]", path), "expected a table, found %s", typeName(val))
			return
		}
		d.table(m, f, path)
	case reflect.Slice:
		d.slice(val, f, path)
	default:
		panic("recipe: unhandled field kind " + f.Kind().String())
	}
}

func (d *decoder) slice(val any, f reflect.Value, path string) {
	var items []any
	switch x := val.(type) {
	case []any:
		items = x
	case []map[string]any:
		for _, m := range x {
			items = append(items, m)
		}
	default:
		if f.Type().Elem().Kind() == reflect.Struct {
			d.add(path, fmt.Sprintf("write each entry as a [[%s]] table", path), "expected an array of tables, found %s", typeName(val))
		} else {
			d.add(path, `write a list in brackets: ["a", "b"]`, "expected an array of strings, found %s", typeName(val))
		}
		return
	}
	if len(items) == 0 {
		f.Set(reflect.Zero(f.Type())) // "[]" is the same as leaving the field out
		return
	}
	out := reflect.MakeSlice(f.Type(), len(items), len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", path, i)
		e := out.Index(i)
		if e.Kind() == reflect.Struct {
			m, ok := it.(map[string]any)
			if !ok {
				d.add(p, fmt.Sprintf("write each entry as a [[%s]] table", path), "expected a table, found %s", typeName(it))
				continue
			}
			d.table(m, e, p)
			continue
		}
		s, ok := it.(string)
		if !ok {
			d.add(p, "put each entry in double quotes", "expected a string, found %s", typeName(it))
			continue
		}
		e.SetString(s)
	}
	f.Set(out)
}

// octalLiteral reports whether the value written for path starts with 0o.
func (d *decoder) octalLiteral(path string) bool {
	n := tomllines.LineOf(d.lines, path)
	if n < 1 || n > len(d.src) {
		return false
	}
	l := d.src[n-1]
	k := path[strings.LastIndexAny(path, ".]")+1:]
	i := strings.Index(l, k)
	if i < 0 {
		return false
	}
	rest := strings.TrimLeft(l[i+len(k):], " \t=")
	return strings.HasPrefix(rest, "0o")
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date/time"
	}
	return fmt.Sprintf("%T", v)
}
