package vmrunner

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
)

// consoleLog keeps the serial console output of one VM in memory (the most recent maxKeep bytes)
// and lets any number of readers follow it from power-on.
type consoleLog struct {
	mu     sync.Mutex
	buf    []byte
	base   int64 // stream offset of buf[0]
	closed bool
	wake   chan struct{} // closed and replaced on every append and on close
}

const maxKeep = 4 << 20

func newConsoleLog() *consoleLog { return &consoleLog{wake: make(chan struct{})} }

func (l *consoleLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - maxKeep; over > 0 {
		l.buf = append(l.buf[:0:0], l.buf[over:]...)
		l.base += int64(over)
	}
	close(l.wake)
	l.wake = make(chan struct{})
	return len(p), nil
}

func (l *consoleLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.wake)
	}
}

// since returns the bytes from stream offset off on (clamped to what is kept), the offset after
// them, whether the log has ended, and a channel closed on the next change.
func (l *consoleLog) since(off int64) ([]byte, int64, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < l.base {
		off = l.base
	}
	data := l.buf[off-l.base:]
	return data, l.base + int64(len(l.buf)), l.closed, l.wake
}

// find waits until text appears in the output. It returns true when found, false when the log
// ended first, and ctx's error when ctx ends first.
func (l *consoleLog) find(ctx context.Context, text string) (bool, error) {
	needle := []byte(text)
	var off int64
	for {
		l.mu.Lock()
		start := max(off-int64(len(needle))+1, l.base) // a match may straddle the previous chunk
		found := bytes.Contains(l.buf[start-l.base:], needle)
		off = l.base + int64(len(l.buf))
		closed, wake := l.closed, l.wake
		l.mu.Unlock()
		if found {
			return true, nil
		}
		if closed {
			return false, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// tail returns the last n lines (a final partial line counts), with carriage returns and
// terminal escape sequences removed.
func (l *consoleLog) tail(n int) []string {
	l.mu.Lock()
	data := string(l.buf)
	l.mu.Unlock()
	data = strings.TrimRight(stripANSI(data), "\r\n")
	if data == "" {
		return nil
	}
	lines := strings.Split(data, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, s := range lines {
		if j := strings.LastIndexByte(strings.TrimRight(s, "\r"), '\r'); j >= 0 { // overwritten line
			s = s[j+1:]
		}
		lines[i] = strings.TrimRight(s, "\r")
	}
	return lines
}

// stripANSI removes the escape sequences (colours, cursor moves, terminal resets) that firmware
// and consoles emit: CSI sequences (ESC [ … final byte) and two-byte ones such as ESC c.
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] >= 0x40 && s[i+1] <= 0x7e { // ESC c, ESC M, …
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// logReader follows a consoleLog from power-on.
type logReader struct {
	l      *consoleLog
	off    int64
	closed chan struct{}
	once   sync.Once
}

func (r *logReader) Read(p []byte) (int, error) {
	for {
		data, end, ended, wake := r.l.since(r.off)
		if len(data) > 0 {
			n := copy(p, data)
			r.off = end - int64(len(data)) + int64(n)
			return n, nil
		}
		r.off = end
		if ended {
			return 0, io.EOF
		}
		select {
		case <-wake:
		case <-r.closed:
			return 0, io.ErrClosedPipe
		}
	}
}

func (r *logReader) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}
