package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/units"
)

// flashProgress is where `kiln flash` reports: one line per drive, redrawn in place, on a
// terminal; the common sinks (JSON lines, plain lines) otherwise.
func (env *Env) flashProgress(c *Common, devices []string) (progress.Func, func()) {
	if f, ok := env.Stderr.(*os.File); ok && !c.JSON && term.IsTerminal(int(f.Fd())) {
		return driveProgress(env.Stderr, devices)
	}
	return env.progressFunc(c)
}

// driveProgress draws one progress line per drive on a terminal and redraws them all in place
// (cursor up, clear line) at most every 100 ms and at every change of phase, so drives flashed at
// once each keep their own line.
func driveProgress(w io.Writer, devices []string) (progress.Func, func()) {
	var (
		mu    sync.Mutex
		order = slices.Clone(devices)
		state = map[string]progress.Event{}
		drawn int
		last  time.Time
	)
	redraw := func() {
		var b strings.Builder
		if drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", drawn)
		}
		width := 0
		for _, d := range order {
			width = max(width, len(d))
		}
		for _, d := range order {
			fmt.Fprintf(&b, "\r\x1b[2K%-*s  %s\n", width, d, driveLine(state[d]))
		}
		drawn = len(order)
		last = time.Now()
		io.WriteString(w, b.String())
	}
	f := func(e progress.Event) {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(order, e.Device) {
			order = append(order, e.Device)
		}
		prev, seen := state[e.Device]
		state[e.Device] = e
		if !seen || prev.Phase != e.Phase || (e.Total > 0 && e.Done >= e.Total) || time.Since(last) >= 100*time.Millisecond {
			redraw()
		}
	}
	return f, func() {
		mu.Lock()
		defer mu.Unlock()
		if drawn > 0 {
			redraw()
		}
	}
}

// driveLine renders one drive's state: phase, a bar, percentage, bytes and the meter's message.
func driveLine(e progress.Event) string {
	if e.Phase == "" {
		return "waiting"
	}
	const width = 30
	line := fmt.Sprintf("%-9s", e.Phase)
	if e.Total > 0 {
		frac := min(1, float64(e.Done)/float64(e.Total))
		n := int(frac * width)
		bar := strings.Repeat("=", n)
		if n < width {
			bar += ">" + strings.Repeat(" ", width-n-1)
		}
		line += fmt.Sprintf(" [%s] %3.0f%%  %s / %s", bar, 100*frac, units.Binary(e.Done), units.Binary(e.Total))
	} else if e.Done > 0 {
		line += " " + units.Binary(e.Done)
	}
	if e.Message != "" {
		line += "  " + e.Message
	}
	return line
}
