package app

import (
	"io"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"
)

// consoleLines is the scroll-back kept by a serial console.
const consoleLines = 2000

// console shows a serial port's output in a monospaced grid. A reader goroutine collects bytes and
// the grid is refreshed at most maxUIRate times a second.
type console struct {
	grid   *widget.TextGrid
	scroll *container.Scroll

	mu      sync.Mutex
	lines   []string // finished lines
	cur     []rune   // the line being written
	esc     int      // state of an ANSI escape sequence being skipped: 0 none, 1 after ESC, 2 in CSI
	cr      bool     // a '\r' was seen: the next character other than '\n' starts the line over
	dirty   bool
	pending bool
}

func newConsole() *console {
	c := &console{grid: widget.NewTextGrid()}
	c.grid.Scroll = fyne.ScrollNone
	c.scroll = container.NewScroll(c.grid)
	return c
}

// Clear empties the console.
func (c *console) Clear() {
	c.mu.Lock()
	c.lines, c.cur, c.esc = nil, nil, 0
	c.mu.Unlock()
	c.grid.SetText("")
}

// Follow copies r into the console until r ends; it runs in its own goroutine.
func (c *console) Follow(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// Write adds output; it may be called from any goroutine.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	for _, r := range strings.ToValidUTF8(string(p), "?") {
		c.put(r)
	}
	c.dirty = true
	schedule := !c.pending
	c.pending = true
	c.mu.Unlock()
	if schedule {
		time.AfterFunc(time.Second/maxUIRate, func() { onUI(c.flush) })
	}
	return len(p), nil
}

// put handles one character: line breaks, backspace, and ANSI escape sequences (dropped).
func (c *console) put(r rune) {
	switch c.esc {
	case 1:
		c.esc = 0
		if r == '[' {
			c.esc = 2
		}
		return
	case 2:
		if r >= 0x40 && r <= 0x7e {
			c.esc = 0
		}
		return
	}
	if c.cr {
		c.cr = false
		if r != '\n' {
			c.cur = c.cur[:0]
		}
	}
	switch r {
	case 0x1b:
		c.esc = 1
	case '\n':
		c.lines = append(c.lines, string(c.cur))
		c.cur = c.cur[:0]
		if len(c.lines) > consoleLines {
			c.lines = c.lines[len(c.lines)-consoleLines:]
		}
	case '\r':
		c.cr = true
	case '\b':
		if len(c.cur) > 0 {
			c.cur = c.cur[:len(c.cur)-1]
		}
	case '\t':
		c.cur = append(c.cur, []rune(strings.Repeat(" ", 8-len(c.cur)%8))...)
	default:
		if r >= 0x20 && r != 0x7f {
			c.cur = append(c.cur, r)
		}
	}
}

// flush copies the text into the grid; it runs on the UI thread.
func (c *console) flush() {
	c.mu.Lock()
	c.pending = false
	if !c.dirty {
		c.mu.Unlock()
		return
	}
	c.dirty = false
	text := strings.Join(append(append([]string(nil), c.lines...), string(c.cur)), "\n")
	c.mu.Unlock()
	c.grid.SetText(text)
	c.scroll.ScrollToBottom()
}

// Text returns what the console shows.
func (c *console) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(append(append([]string(nil), c.lines...), string(c.cur)), "\n")
}
