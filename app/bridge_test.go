package app

import (
	"testing"

	"github.com/kilnproject/kiln/internal/progress"
)

// The bridge coalesces a burst into few updates but keeps the last event of every phase of every
// device, in order.
func TestBridgeKeepsPhasesAndLastEvents(t *testing.T) {
	var got []progress.Event
	b := NewBridge(func(e progress.Event) { got = append(got, e) })
	f := b.Func()
	for i := int64(1); i <= 1000; i++ {
		f(progress.Event{Phase: "writing", Device: "/dev/sdb", Done: i, Total: 1000})
		f(progress.Event{Phase: "writing", Device: "/dev/sdc", Done: i, Total: 1000})
	}
	for i := int64(1); i <= 1000; i++ {
		f(progress.Event{Phase: "verifying", Device: "/dev/sdb", Done: i, Total: 1000})
	}
	b.Close()
	ui.run()
	last := map[string]progress.Event{}
	phases := map[string][]string{}
	for _, e := range got {
		if l, ok := last[e.Device]; ok && l.Phase == e.Phase && e.Done < l.Done {
			t.Errorf("%s went back from %d to %d", e.Device, l.Done, e.Done)
		}
		if ps := phases[e.Device]; len(ps) == 0 || ps[len(ps)-1] != e.Phase {
			phases[e.Device] = append(ps, e.Phase)
		}
		last[e.Device] = e
	}
	if len(got) > 1000 {
		t.Errorf("%d of 3000 events reached the UI: not coalesced", len(got))
	}
	if p := phases["/dev/sdb"]; len(p) != 2 || p[0] != "writing" || p[1] != "verifying" {
		t.Errorf("/dev/sdb phases %v", p)
	}
	if last["/dev/sdb"].Done != 1000 || last["/dev/sdc"].Done != 1000 || last["/dev/sdb"].Phase != "verifying" {
		t.Errorf("final events %+v", last)
	}
	for _, e := range got {
		if e.Device == "/dev/sdb" && e.Phase == "writing" && e.Done == 1000 {
			return
		}
	}
	t.Error("the last event of the writing phase was dropped")
}
