package server

import (
	"sort"
	"sync"
	"time"

	"github.com/kilnproject/kiln/ota"
)

// deviceTable is the bounded, concurrency-safe table of devices that talked to the server.
type deviceTable struct {
	mu  sync.Mutex
	max int
	m   map[string]*ota.DeviceStatus
	now func() time.Time
}

func newDeviceTable(max int) *deviceTable {
	return &deviceTable{max: max, m: map[string]*ota.DeviceStatus{}, now: time.Now}
}

// row returns the row for d, creating it (and evicting the stalest row if full).
func (t *deviceTable) row(d ota.Device, addr string) *ota.DeviceStatus {
	row := t.m[d.ID]
	if row == nil {
		if len(t.m) >= t.max {
			var oldest *ota.DeviceStatus
			for _, r := range t.m {
				if oldest == nil || r.LastSeen.Before(oldest.LastSeen) {
					oldest = r
				}
			}
			delete(t.m, oldest.ID)
		}
		row = &ota.DeviceStatus{ID: d.ID}
		t.m[d.ID] = row
	}
	row.Name, row.Version, row.Board, row.Channel, row.Addr = d.Name, d.Version, d.Board, d.Channel, addr
	row.LastSeen = t.now().UTC()
	return row
}

// seen records a check: the device's version and what it was offered. Its state stays what
// it last reported.
func (t *deviceTable) seen(d ota.Device, addr, offered, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	row := t.row(d, addr)
	row.Offered = offered
	if row.State == "" {
		row.State = "up-to-date"
		if offered != "" {
			row.State = "update-available"
		}
		row.Message = msg
	}
}

func (t *deviceTable) report(r ota.Report, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	row := t.row(r.Device, addr)
	row.State, row.Target, row.Message = r.State, r.Target, r.Message
}

func (t *deviceTable) list() []ota.DeviceStatus {
	t.mu.Lock()
	out := make([]ota.DeviceStatus, 0, len(t.m))
	for _, r := range t.m {
		out = append(out, *r)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
