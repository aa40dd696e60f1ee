package app

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// uiQueue stands in for Fyne's event loop in the tests: background goroutines queue their widget
// updates (onUI) and the test goroutine, the tests' UI thread, runs them whenever it waits. Widgets
// are then only ever touched from one goroutine, as in the app.
type uiQueue struct {
	mu   sync.Mutex
	fns  []func()
	wake chan struct{}
}

var ui = &uiQueue{wake: make(chan struct{}, 1)}

func TestMain(m *testing.M) {
	onUI = ui.post
	os.Exit(m.Run())
}

func (q *uiQueue) post(f func()) {
	q.mu.Lock()
	q.fns = append(q.fns, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run runs the queued updates, and those they queue, and reports whether there were any.
func (q *uiQueue) run() bool {
	ran := false
	for {
		q.mu.Lock()
		fns := q.fns
		q.fns = nil
		q.mu.Unlock()
		if len(fns) == 0 {
			return ran
		}
		for _, f := range fns {
			f()
		}
		ran = true
	}
}

// reset drops what a closed app left queued.
func (q *uiQueue) reset() {
	q.mu.Lock()
	q.fns = nil
	q.mu.Unlock()
}

// settle runs the UI queue until the app's background work has finished and its updates are shown.
func settle(t *testing.T, a *App) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		idle := make(chan struct{})
		go func() { a.Wait(); close(idle) }()
	wait:
		for {
			select {
			case <-idle:
				break wait
			case <-ui.wake:
				ui.run()
			case <-deadline:
				t.Fatalf("background work still running after 3 min:\n%s", stacks())
			}
		}
		if !ui.run() { // the last updates may start more work
			return
		}
	}
}

// waitFor runs the UI queue until cond holds, for state that a watcher goroutine changes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		ui.run()
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not reached within 5 s:\n%s", stacks())
}

// stacks returns every goroutine's stack, to show where a stuck test waits.
func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
