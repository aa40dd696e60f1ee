package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits bound what a deb822 parser accepts from outside input.
type Limits struct {
	Field     int   // bytes in one field value, continuation lines included
	Paragraph int   // bytes in one paragraph
	Total     int64 // bytes in the whole file
}

// DefaultLimits fit Debian's real indices with a wide margin (bookworm main amd64 Packages is
// about 50 MB, its largest field a few KiB).
var DefaultLimits = Limits{Field: 1 << 20, Paragraph: 4 << 20, Total: 1 << 30}

// Field is one "Name: value" field; a multi-line value keeps its continuation lines joined by
// "\n", each without its leading space.
type Field struct {
	Name, Value string
}

// Paragraph is one deb822 stanza, fields in file order.
type Paragraph []Field

// Get returns the value of the named field (case-insensitive, as deb822 field names are).
func (p Paragraph) Get(name string) (string, bool) {
	for _, f := range p {
		if len(f.Name) == len(name) && equalFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// ErrTooLarge is wrapped by errors for input beyond Limits.
var ErrTooLarge = errors.New("too large")

// ParseDeb822 reads deb822 paragraphs from r and calls fn for each, in order. Lines starting with
// '#' are comments. The Paragraph passed to fn is reused after fn returns. Errors name the line.
func ParseDeb822(r io.Reader, lim Limits, fn func(Paragraph) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		para     Paragraph
		paraSize int
		total    int64
		lineNo   int
		cont     []byte // value being built for the last field
		haveLast bool
	)
	flushField := func() {
		if haveLast {
			para[len(para)-1].Value = string(cont)
			haveLast = false
		}
	}
	flushPara := func() error {
		flushField()
		if len(para) == 0 {
			return nil
		}
		err := fn(para)
		para, paraSize = para[:0], 0
		return err
	}
	for {
		line, err := readLine(br, lim.Field+256)
		if err != nil && err != io.EOF {
			return fmt.Errorf("line %d: %w", lineNo+1, err)
		}
		if len(line) == 0 && err == io.EOF {
			return flushPara()
		}
		lineNo++
		total += int64(len(line)) + 1
		if total > lim.Total {
			return fmt.Errorf("line %d: file over %d bytes: %w", lineNo, lim.Total, ErrTooLarge)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			if err := flushPara(); err != nil {
				return err
			}
		case line[0] == '#':
		case line[0] == ' ' || line[0] == '\t':
			if !haveLast {
				return fmt.Errorf("line %d: continuation line outside a field", lineNo)
			}
			v := bytes.TrimSpace(line)
			if len(cont)+1+len(v) > lim.Field {
				return fmt.Errorf("line %d: field %s over %d bytes: %w", lineNo, para[len(para)-1].Name, lim.Field, ErrTooLarge)
			}
			cont = append(append(cont, '\n'), v...)
			paraSize += len(v) + 1
		default:
			flushField()
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				return fmt.Errorf("line %d: expected \"Field: value\", got %.40q", lineNo, line)
			}
			name := string(bytes.TrimSpace(line[:i]))
			if name == "" || bytes.ContainsAny([]byte(name), " \t") {
				return fmt.Errorf("line %d: bad field name %.40q", lineNo, name)
			}
			if _, dup := para.Get(name); dup {
				return fmt.Errorf("line %d: field %s appears twice in one paragraph", lineNo, name)
			}
			v := bytes.TrimSpace(line[i+1:])
			if len(v) > lim.Field {
				return fmt.Errorf("line %d: field %s over %d bytes: %w", lineNo, name, lim.Field, ErrTooLarge)
			}
			cont = append(cont[:0], v...)
			haveLast = true
			para = append(para, Field{Name: name})
			paraSize += len(line)
		}
		if paraSize > lim.Paragraph {
			return fmt.Errorf("line %d: paragraph over %d bytes: %w", lineNo, lim.Paragraph, ErrTooLarge)
		}
		if err == io.EOF {
			return flushPara()
		}
	}
}

// readLine returns the next line including its newline (none at EOF), refusing lines over max.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil || err == io.EOF {
		return line, err
	}
	if err != bufio.ErrBufferFull {
		return nil, err
	}
	buf := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > max {
			return nil, fmt.Errorf("line over %d bytes: %w", max, ErrTooLarge)
		}
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}
