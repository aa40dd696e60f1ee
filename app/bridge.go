package app

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnproject/kiln/internal/progress"
)

// maxUIRate caps how often progress reaches the widgets.
const maxUIRate = 30 // updates per second

// progressRate is the bridges' update rate (KILN_UI_RATE, 1…maxUIRate): 15 a second moves a progress
// bar smoothly and leaves the UI thread idle most of the time under software rendering.
var progressRate = 15

// uiStats counts what the bridge delivers, for the benchmarks (KILN_UI_STATS).
var uiStats struct {
	events, updates atomic.Int64
	maxCallback     atomic.Int64 // nanoseconds, longest UI callback run by a bridge
}

// Bridge turns progress events from a core goroutine into widget updates on the UI thread: it keeps
// only the newest event per device and phase and hands them to update in one onUI call at most
// maxUIRate times a second. A phase change is never lost: the last event of the old phase is
// delivered before the first of the new one, in the same update.
type Bridge struct {
	update func(progress.Event) // runs on the UI thread

	mu      sync.Mutex
	pending []progress.Event // undelivered events, at most one per device and phase, in order
	stop    chan struct{}
	done    chan struct{}
}

// NewBridge starts a bridge that calls update on the UI thread. Call Close when the work is over: it
// delivers the last events and stops the ticker.
func NewBridge(update func(progress.Event)) *Bridge {
	b := &Bridge{update: update, stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

// Func is the progress.Func to hand to a core call; it never blocks on the UI.
func (b *Bridge) Func() progress.Func {
	return func(e progress.Event) {
		uiStats.events.Add(1)
		b.mu.Lock()
		defer b.mu.Unlock()
		for i := len(b.pending) - 1; i >= 0; i-- {
			if p := b.pending[i]; p.Device == e.Device {
				if p.Phase == e.Phase {
					b.pending[i] = e
					return
				}
				break // a new phase for this device: keep the old phase's last event too
			}
		}
		b.pending = append(b.pending, e)
	}
}

func (b *Bridge) loop() {
	defer close(b.done)
	t := time.NewTicker(time.Second / time.Duration(progressRate))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.deliver(b.take())
		case <-b.stop:
			b.deliver(b.take())
			return
		}
	}
}

// take removes and returns the pending events in arrival order.
func (b *Bridge) take() []progress.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.pending
	b.pending = nil
	return evs
}

// deliver schedules one UI callback carrying evs.
func (b *Bridge) deliver(evs []progress.Event) {
	if len(evs) == 0 {
		return
	}
	uiStats.updates.Add(1)
	onUI(func() {
		start := time.Now()
		for _, e := range evs {
			b.update(e)
		}
		if d := int64(time.Since(start)); d > uiStats.maxCallback.Load() {
			uiStats.maxCallback.Store(d)
		}
	})
}

// Close delivers the pending events and stops the bridge. It is safe to call more than once.
func (b *Bridge) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}
