package server

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
)

// Limits of the device table.
const (
	// newIDBurst new device IDs may come from one address at once, then one per newIDEvery.
	newIDBurst = 16
	newIDEvery = 10 * time.Second
	// maxAddrs bounds how many addresses' new-ID budgets are remembered (at least as many as
	// the table has rows).
	maxAddrs = 4096
	// maxNonces is how many requests one device may make within ota.SignatureWindow.
	maxNonces = 64
	// staleAfter: an established device unseen this long may make room for a new one.
	staleAfter = 24 * time.Hour
)

// Why the table refuses a request; the handlers map them to status codes.
var (
	errKeyMismatch = fleet.ErrKeyMismatch
	errReplay      = fleet.ErrReplay
	errBusy        = errors.New("too many requests from this device; slow down")
	errRateLimited = errors.New("too many new devices from this address; try again later")
	errTableFull   = errors.New("device table full of active devices; raise MaxDevices")
)

// row is a device and what authenticates it: the key pinned on first contact and the nonces of
// its recent requests.
type row struct {
	ota.DeviceStatus
	key      string
	contacts int
	reported bool
	nonces   map[string]time.Time // nonce -> signature time
	nonce    string               // of the request being recorded
	// checked is what the last check found (state, version, offer, why), to record changes only.
	checked [4]string
	// signed is the signature time of its newest request.
	signed time.Time
}

// established rows (a report, or more than one contact) are never evicted for newcomers unless
// they have not been seen for staleAfter.
func (r *row) established() bool { return r.reported || r.contacts > 1 }

// bucket is a token bucket of new IDs for one address.
type bucket struct {
	tokens float64
	at     time.Time
}

// deviceTable is the bounded, concurrency-safe table of devices that talked to the server.
// With a store, every change is written through to it, and the table starts from it.
type deviceTable struct {
	mu      sync.Mutex
	max     int
	m       map[string]*row
	buckets map[string]*bucket
	now     func() time.Time
	store   fleet.Store
}

// storeTimeout bounds one write to the store.
const storeTimeout = 10 * time.Second

func newDeviceTable(max int) *deviceTable {
	return &deviceTable{max: max, m: map[string]*row{}, buckets: map[string]*bucket{}, now: time.Now}
}

// load fills the table from store and writes through to it from now on. Devices beyond the
// table's size (MaxDevices was lowered), the least recently seen, are forgotten.
func (t *deviceTable) load(store fleet.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	devs, err := store.Devices(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.store = store
	for i, d := range devs {
		if i >= t.max {
			if err := store.Delete(ctx, d.ID); err != nil {
				return err
			}
			continue
		}
		t.m[d.ID] = &row{DeviceStatus: d.DeviceStatus, key: d.Key, contacts: d.Contacts, reported: d.Reported,
			nonces: map[string]time.Time{}, signed: d.LastSigned}
	}
	return nil
}

// save writes r, and ev if not nil, to the store. Called with t.mu held.
func (t *deviceTable) save(r *row, ev *fleet.Event) error {
	if t.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return t.store.Put(ctx, fleet.Device{DeviceStatus: r.DeviceStatus, Key: r.key, Contacts: r.contacts, Reported: r.reported,
		LastSigned: r.signed, Nonce: r.nonce}, ev)
}

// forget removes a device evicted from the table from the store. Called with t.mu held.
func (t *deviceTable) forget(id string) error {
	if t.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return t.store.Delete(ctx, id)
}

// admit returns the row of an authenticated request from d (signature sig, already verified
// against d.Key), creating it if the address's budget and the table allow. Called with t.mu held.
func (t *deviceTable) admit(d ota.Device, sig ota.Signature, addr string) (*row, error) {
	now := t.now()
	r := t.m[d.ID]
	if t.store != nil {
		// Other servers sharing the database may have heard from the device since: start
		// from the stored row. The database refuses their requests' replays (save).
		var err error
		if r, err = t.refresh(d.ID, r); err != nil {
			return nil, err
		}
	}
	if r != nil {
		if r.key != d.Key {
			return nil, errKeyMismatch
		}
		for n, at := range r.nonces {
			if now.Sub(at) > ota.SignatureWindow {
				delete(r.nonces, n)
			}
		}
		// (The store refuses nonces seen before a restart, or by another server: save.)
		if _, ok := r.nonces[sig.Nonce]; ok {
			return nil, errReplay
		}
		if len(r.nonces) >= maxNonces {
			return nil, errBusy
		}
	} else {
		if !t.allowNew(addr, now) {
			return nil, errRateLimited
		}
		if len(t.m) >= t.max {
			victim := t.victim(now)
			if victim == nil {
				return nil, errTableFull
			}
			if err := t.forget(victim.ID); err != nil {
				return nil, err
			}
			delete(t.m, victim.ID)
		}
		r = &row{DeviceStatus: ota.DeviceStatus{ID: d.ID}, key: d.Key, nonces: map[string]time.Time{}}
		t.m[d.ID] = r
	}
	r.nonces[sig.Nonce] = sig.Time
	r.nonce = sig.Nonce
	if sig.Time.After(r.signed) {
		r.signed = sig.Time
	}
	r.contacts++
	r.Name, r.Version, r.Board, r.Channel, r.Addr = d.Name, d.Version, d.Board, d.Channel, addr
	r.LastSeen = now.UTC()
	return r, nil
}

// refresh returns device id's row as stored (r, updated, or a new row), or r when the store
// does not have it. Called with t.mu held.
func (t *deviceTable) refresh(id string, r *row) (*row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	d, ok, err := t.store.Device(ctx, id)
	if err != nil || !ok {
		return r, err
	}
	if r == nil {
		if len(t.m) >= t.max {
			return nil, nil // admitted as a newcomer, if there is room
		}
		r = &row{nonces: map[string]time.Time{}}
		t.m[id] = r
	}
	r.DeviceStatus, r.key, r.contacts, r.reported = d.DeviceStatus, d.Key, d.Contacts, d.Reported
	if d.LastSigned.After(r.signed) {
		r.signed = d.LastSigned
	}
	return r, nil
}

// victim is the row a newcomer may replace: the least recently seen row that is not
// established, else the least recently seen established one unseen for staleAfter, else none.
func (t *deviceTable) victim(now time.Time) *row {
	var fresh, stale *row
	for _, r := range t.m {
		switch {
		case !r.established():
			if fresh == nil || r.LastSeen.Before(fresh.LastSeen) {
				fresh = r
			}
		case now.Sub(r.LastSeen) > staleAfter:
			if stale == nil || r.LastSeen.Before(stale.LastSeen) {
				stale = r
			}
		}
	}
	if fresh != nil {
		return fresh
	}
	return stale
}

// allowNew takes a token from the new-ID bucket of addr's host (its /64 for IPv6).
func (t *deviceTable) allowNew(addr string, now time.Time) bool {
	src := sourceKey(addr)
	b := t.buckets[src]
	if b == nil {
		limit := max(maxAddrs, t.max)
		if len(t.buckets) >= limit {
			// A full bucket is the same as none: forget those to make room.
			for k, o := range t.buckets {
				if o.refill(now) >= newIDBurst {
					delete(t.buckets, k)
				}
			}
			if len(t.buckets) >= limit {
				return false
			}
		}
		b = &bucket{tokens: newIDBurst, at: now}
		t.buckets[src] = b
	}
	if b.refill(now) < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time) float64 {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(newIDBurst, b.tokens+float64(d)/float64(newIDEvery))
		b.at = now
	}
	return b.tokens
}

// sourceKey is what new-ID budgets are kept per: the host of a "host:port" address, the /64
// network for IPv6 (one host may hold a whole /64).
func sourceKey(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// undoOnError returns a function that puts device id's row back as it is now if *err is set
// by then: a request the store refused (a replay another server saw) changes nothing.
// Called with t.mu held.
func (t *deviceTable) undoOnError(id string, err *error) func() {
	prev, had := t.m[id]
	var old row
	if had {
		old = *prev
	}
	return func() {
		if *err == nil {
			return
		}
		switch cur := t.m[id]; {
		case !had:
			delete(t.m, id)
		case cur != nil:
			*cur = old
		}
	}
}

// seen records a check: the device's version and what it was offered. Its state stays what
// it last reported.
func (t *deviceTable) seen(d ota.Device, sig ota.Signature, addr, offered, msg string) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.undoOnError(d.ID, &err)()
	r, err := t.admit(d, sig, addr)
	if err != nil {
		return err
	}
	r.Offered = offered
	found := "up-to-date"
	if offered != "" {
		found = "update-available"
	}
	if !r.reported {
		r.State, r.Message = found, msg
	}
	var ev *fleet.Event
	if c := [4]string{found, d.Version, offered, msg}; c != r.checked {
		r.checked = c
		ev = &fleet.Event{Time: r.LastSeen, State: found, Version: d.Version, Target: offered, Message: msg, Addr: addr}
	}
	return t.save(r, ev)
}

func (t *deviceTable) report(rep ota.Report, sig ota.Signature, addr string) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.undoOnError(rep.ID, &err)()
	r, err := t.admit(rep.Device, sig, addr)
	if err != nil {
		return err
	}
	r.reported = true
	r.State, r.Target, r.Message = rep.State, rep.Target, rep.Message
	return t.save(r, &fleet.Event{Time: r.LastSeen, State: rep.State, Version: rep.Version, Target: rep.Target,
		Message: rep.Message, Addr: addr})
}

func (t *deviceTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *deviceTable) list() []ota.DeviceStatus {
	t.mu.Lock()
	out := make([]ota.DeviceStatus, 0, len(t.m))
	for _, r := range t.m {
		out = append(out, r.DeviceStatus)
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
