package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/units"
)

// progressFunc returns the progress sink for a command: JSON lines on stdout with --json, a progress
// bar on a terminal, or a plain line per phase and at most one a second otherwise. Call the returned
// finish function when the work ends.
func (env *Env) progressFunc(c *Common) (progress.Func, func()) {
	if c.JSON {
		enc := json.NewEncoder(env.Stdout)
		var mu sync.Mutex
		f := progress.Throttle(func(e progress.Event) {
			mu.Lock()
			defer mu.Unlock()
			enc.Encode(struct {
				Kind string `json:"event"`
				progress.Event
			}{"progress", e})
		}, 200*time.Millisecond)
		return f, func() {}
	}
	if f, ok := env.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return barProgress(env.Stderr)
	}
	return plainProgress(env.Stderr)
}

func barProgress(w io.Writer) (progress.Func, func()) {
	var (
		mu    sync.Mutex
		bar   *progressbar.ProgressBar
		phase string
	)
	finish := func() {
		if bar != nil {
			bar.Finish()
			fmt.Fprintln(w)
		}
	}
	f := func(e progress.Event) {
		mu.Lock()
		defer mu.Unlock()
		key := e.Device + e.Phase
		if bar == nil || key != phase {
			finish()
			phase = key
			desc := e.Phase
			if e.Device != "" {
				desc = e.Device + " " + desc
			}
			total := e.Total
			if total <= 0 {
				total = -1
			}
			bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
				progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		}
		bar.Set64(e.Done)
	}
	return progress.Throttle(f, 50*time.Millisecond), func() { mu.Lock(); finish(); mu.Unlock() }
}

func plainProgress(w io.Writer) (progress.Func, func()) {
	var mu sync.Mutex
	f := progress.Throttle(func(e progress.Event) {
		mu.Lock()
		defer mu.Unlock()
		line := e.Phase
		if e.Device != "" {
			line = e.Device + ": " + line
		}
		if e.Total > 0 {
			line += fmt.Sprintf(" %3.0f%% (%s / %s)", 100*float64(e.Done)/float64(e.Total), units.Binary(e.Done), units.Binary(e.Total))
		} else if e.Done > 0 {
			line += " " + units.Binary(e.Done)
		}
		if e.Message != "" {
			line += " — " + e.Message
		}
		fmt.Fprintln(w, line)
	}, time.Second)
	return f, func() {}
}

// printJSON writes v as one JSON line tagged as the command's result.
func (env *Env) printJSON(v any) error {
	return json.NewEncoder(env.Stdout).Encode(struct {
		Kind   string `json:"event"`
		Result any    `json:"result"`
	}{"result", v})
}
