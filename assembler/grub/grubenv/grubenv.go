// Package grubenv reads and writes GRUB's environment block (grubenv): exactly 1024 bytes, the line
// "# GRUB Environment Block", then "name=value" lines, padded with '#'. GRUB's load_env and
// save_env read and rewrite it in place through its block list, so a writer keeps the size and
// must not move the file.
package grubenv

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Size is the size of an environment block.
const Size = 1024

const header = "# GRUB Environment Block\n"

// ErrFormat: the data is not an environment block.
var ErrFormat = errors.New("not a GRUB environment block")

// ErrTooLarge: the variables do not fit into one block.
var ErrTooLarge = errors.New("GRUB environment block full")

// Env is the variables of an environment block.
type Env map[string]string

// Parse reads an environment block. Lines GRUB would skip (comments, lines without '=') are
// skipped; backslash escapes are undone as GRUB does.
func Parse(b []byte) (Env, error) {
	if len(b) != Size {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrFormat, len(b), Size)
	}
	if !bytes.HasPrefix(b, []byte(header)) {
		return nil, fmt.Errorf("%w: no %q line", ErrFormat, strings.TrimSpace(header))
	}
	env := Env{}
	rest := b[len(header):]
	for len(rest) > 0 {
		line := rest
		i := 0
		for ; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
				continue
			}
			if rest[i] == '\n' {
				break
			}
		}
		if i < len(rest) {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok || len(name) == 0 {
			continue
		}
		env[string(name)] = unescape(value)
	}
	return env, nil
}

func unescape(v []byte) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

// Encode writes env as a block, variables in name order.
func Encode(env Env) ([]byte, error) {
	names := make([]string, 0, len(env))
	for n := range env {
		if n == "" || strings.ContainsAny(n, "=\n\\#") {
			return nil, fmt.Errorf("grubenv: bad variable name %q", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	buf.WriteString(header)
	for _, n := range names {
		buf.WriteString(n)
		buf.WriteByte('=')
		for _, c := range []byte(env[n]) {
			if c == '\\' || c == '\n' {
				buf.WriteByte('\\')
			}
			buf.WriteByte(c)
		}
		buf.WriteByte('\n')
	}
	if buf.Len() > Size {
		return nil, fmt.Errorf("%w: %d bytes of variables", ErrTooLarge, buf.Len())
	}
	buf.Write(bytes.Repeat([]byte{'#'}, Size-buf.Len()))
	return buf.Bytes(), nil
}
