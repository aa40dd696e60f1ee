package app

import (
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"

	"github.com/kilnproject/kiln/internal/progress"
)

// maxUIRate caps how often progress reaches the widgets.
const maxUIRate = 30 // updates per second

// uiStats counts what the bridge delivers, for the benchmarks (KILN_UI_STATS).
var uiStats struct {
	events, updates atomic.Int64
	maxCallback     atomic.Int64 // nanoseconds, longest UI callback run by a bridge
}

// Bridge turns progress events from a core goroutine into widget updates on the UI thread: it keeps
// only the newest event per device and hands it to update through fyne.Do at most maxUIRate times a
// second. A phase change is never lost: the first event of a new phase is delivered before later ones.
type Bridge struct {
	update func(progress.Event) // runs on the UI thread

	mu      sync.Mutex
	pending map[string]progress.Event // newest undelivered event per device
	order   []string
	phase   map[string]string
	stop    chan struct{}
	done    chan struct{}
}

// NewBridge starts a bridge that calls update on the UI thread. Call Close when the work is over: it
// delivers the last event and stops the ticker.
func NewBridge(update func(progress.Event)) *Bridge {
	b := &Bridge{
		update:  update,
		pending: map[string]progress.Event{},
		phase:   map[string]string{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go b.loop()
	return b
}

// Func is the progress.Func to hand to a core call; it never blocks on the UI.
func (b *Bridge) Func() progress.Func {
	return func(e progress.Event) {
		uiStats.events.Add(1)
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.pending[e.Device]; !ok {
			b.order = append(b.order, e.Device)
		} else if b.phase[e.Device] != e.Phase {
			// Deliver the old phase's last event now so the UI shows every phase.
			b.deliver(b.takeLocked())
			b.order = append(b.order, e.Device)
		}
		b.pending[e.Device] = e
		b.phase[e.Device] = e.Phase
	}
}

func (b *Bridge) loop() {
	defer close(b.done)
	t := time.NewTicker(time.Second / maxUIRate)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.mu.Lock()
			evs := b.takeLocked()
			b.mu.Unlock()
			b.deliver(evs)
		case <-b.stop:
			b.mu.Lock()
			evs := b.takeLocked()
			b.mu.Unlock()
			b.deliver(evs)
			return
		}
	}
}

// takeLocked removes and returns the pending events in arrival order.
func (b *Bridge) takeLocked() []progress.Event {
	if len(b.order) == 0 {
		return nil
	}
	evs := make([]progress.Event, 0, len(b.order))
	for _, d := range b.order {
		evs = append(evs, b.pending[d])
	}
	b.order = b.order[:0]
	clear(b.pending)
	return evs
}

// deliver schedules one UI callback carrying evs. fyne.Do only queues, so this is safe under b.mu.
func (b *Bridge) deliver(evs []progress.Event) {
	if len(evs) == 0 {
		return
	}
	uiStats.updates.Add(1)
	fyne.Do(func() {
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
