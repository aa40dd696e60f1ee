// Package tomllines maps the keys of a TOML document to the lines that set them, for messages that
// name file, line and field (the toml package does not expose key positions).
package tomllines

import (
	"regexp"
	"strconv"
	"strings"
)

// Scan maps field paths ("board.disk_size", "system.users[1].name") to the line that sets
// them. It is a light scan of TOML's line structure (table headers, key = value lines, inline
// tables) that skips multi-line strings and arrays; the toml package does not expose key positions.
func Scan(src []string) map[string]int {
	out := map[string]int{}
	set := func(p string, n int) {
		if _, ok := out[p]; !ok {
			out[p] = n
		}
	}
	table := ""
	counts := map[string]int{} // array-of-tables path (without indices) → entries so far
	// indexed turns a dotted key into a path with the current array-of-tables indices.
	indexed := func(parts []string) string {
		var b strings.Builder
		plain := ""
		for i, p := range parts {
			if i > 0 {
				b.WriteByte('.')
				plain += "."
			}
			b.WriteString(p)
			plain += p
			if c, ok := counts[plain]; ok && i < len(parts)-1 {
				b.WriteString("[" + strconv.Itoa(c-1) + "]")
			}
		}
		return b.String()
	}
	inString := "" // """ or ''' while inside a multi-line string
	depth := 0     // open brackets of a multi-line array
	for i, raw := range src {
		n := i + 1
		t := strings.TrimSpace(raw)
		if inString != "" {
			if strings.Count(t, inString)%2 == 1 {
				inString = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDelta(t)
			continue
		}
		if t == "" || t[0] == '#' {
			continue
		}
		if strings.HasPrefix(t, "[[") {
			end := strings.Index(t, "]]")
			if end < 0 {
				continue
			}
			parts := splitKey(t[2:end])
			plain := strings.Join(parts, ".")
			for k := range counts {
				if strings.HasPrefix(k, plain+".") {
					delete(counts, k)
				}
			}
			counts[plain]++
			table = indexed(parts) + "[" + strconv.Itoa(counts[plain]-1) + "]"
			set(indexed(parts), n)
			set(table, n)
			continue
		}
		if t[0] == '[' {
			end := strings.IndexByte(t, ']')
			if end < 0 {
				continue
			}
			table = indexed(splitKey(t[1:end]))
			set(table, n)
			continue
		}
		eq := keyEnd(t)
		if eq < 0 {
			continue
		}
		key := table
		for _, p := range splitKey(t[:eq]) {
			key = join(key, p)
			set(key, n)
		}
		rest := strings.TrimSpace(t[eq+1:])
		switch {
		case strings.HasPrefix(rest, `"""`) || strings.HasPrefix(rest, `'''`):
			q := rest[:3]
			if strings.Count(rest, q)%2 == 1 {
				inString = q
			}
		case strings.HasPrefix(rest, "["):
			depth = bracketDelta(rest)
		case strings.HasPrefix(rest, "{"):
			for _, m := range inlineKey.FindAllStringSubmatch(rest, -1) {
				set(join(key, m[1]), n)
			}
		}
	}
	return out
}

var inlineKey = regexp.MustCompile(`[{,]\s*([A-Za-z0-9_-]+)\s*=`)

// keyEnd returns the index of the '=' that ends a key at the start of t, or -1.
func keyEnd(t string) int {
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '=':
			return i
		case c == '"' || c == '\'':
			j := strings.IndexByte(t[i+1:], c)
			if j < 0 {
				return -1
			}
			i += j + 1
		case c == '.' || c == ' ' || c == '\t' || c == '_' || c == '-' ||
			c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
		default:
			return -1
		}
	}
	return -1
}

// splitKey splits a dotted TOML key, removing quotes and spaces.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// bracketDelta counts '[' minus ']' outside strings and comments.
func bracketDelta(t string) int {
	d := 0
	for i := 0; i < len(t); i++ {
		switch c := t[i]; c {
		case '#':
			return d
		case '"', '\'':
			j := strings.IndexByte(t[i+1:], c)
			if j < 0 {
				return d
			}
			i += j + 1
		case '[':
			d++
		case ']':
			d--
		}
	}
	return d
}

// LineOf returns the line of path, or of its closest parent that has one, or 0.
func LineOf(lines map[string]int, path string) int {
	for path != "" {
		if n, ok := lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
