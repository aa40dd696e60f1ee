package server

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
)

func openStore(t *testing.T) fleet.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := fleet.Open(ctx, filepath.Join(t.TempDir(), "devices.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sigNow() ota.Signature { return ota.Signature{Time: time.Now(), Nonce: ota.NewNonce()} }

// A restarted server must not let a newcomer pin another key to a known device's ID.
func TestRestartKeepsPinnedKeys(t *testing.T) {
	store := openStore(t)
	real := ota.Device{ID: "tiny-0123456789abcdef", Key: "REAL-KEY", Name: "tiny", Version: "1.0.0"}
	before := newDeviceTable(16)
	if err := before.load(store); err != nil {
		t.Fatal(err)
	}
	if err := before.report(ota.Report{Device: real, State: ota.StateHealthy}, sigNow(), "192.168.1.20:1"); err != nil {
		t.Fatal(err)
	}

	after := newDeviceTable(16)
	if err := after.load(store); err != nil {
		t.Fatal(err)
	}
	spoof := real
	spoof.Key = "OTHER-KEY"
	err := after.report(ota.Report{Device: spoof, State: ota.StateRolledBack}, sigNow(), "192.168.1.66:1")
	if !errors.Is(err, errKeyMismatch) {
		t.Fatalf("report under a known ID with another key after a restart: %v, want errKeyMismatch", err)
	}
	if l := after.list(); len(l) != 1 || l[0].State != ota.StateHealthy {
		t.Fatalf("table after the spoof: %+v", l)
	}
}

// The store holds what the table holds: a device the table evicts leaves the store too, and a
// store larger than the table (MaxDevices lowered) is cut to the most recently seen.
func TestStoreFollowsTableCaps(t *testing.T) {
	store := openStore(t)
	tab := newDeviceTable(2)
	if err := tab.load(store); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	tab.now = func() time.Time { return clock }
	for i, id := range []string{"a", "b", "c"} {
		clock = clock.Add(time.Minute)
		d := ota.Device{ID: id, Key: "K" + id, Version: "1.0.0"}
		if err := tab.seen(d, sigNow(), "192.168.1."+string(rune('1'+i))+":1", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := store.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].ID != "c" || devs[1].ID != "b" {
		t.Fatalf("store after evicting one device: %+v", devs)
	}

	small := newDeviceTable(1)
	if err := small.load(store); err != nil {
		t.Fatal(err)
	}
	if l := small.list(); len(l) != 1 || l[0].ID != "c" {
		t.Fatalf("table of 1 loaded %+v", l)
	}
	if devs, _ := store.Devices(context.Background()); len(devs) != 1 || devs[0].ID != "c" {
		t.Fatalf("store after loading into a table of 1: %+v", devs)
	}
}

// The nonces a device used are not stored; a request signed before the restart is refused
// as a replay all the same, and the device's next request passes.
func TestRestartRefusesReplays(t *testing.T) {
	store := openStore(t)
	dev := ota.Device{ID: "tiny-0123456789abcdef", Key: "KEY", Name: "tiny", Version: "1.0.0"}
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	captured := ota.Signature{Time: at, Nonce: "n1"}
	before := newDeviceTable(16)
	if err := before.load(store); err != nil {
		t.Fatal(err)
	}
	if err := before.report(ota.Report{Device: dev, State: ota.StateInstalled}, ota.Signature{Time: at.Add(-time.Second), Nonce: "n0"}, "192.168.1.20:1"); err != nil {
		t.Fatal(err)
	}
	if err := before.report(ota.Report{Device: dev, State: ota.StateRolledBack}, captured, "192.168.1.20:1"); err != nil {
		t.Fatal(err)
	}

	after := newDeviceTable(16)
	if err := after.load(store); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []ota.Signature{captured, {Time: at.Add(-time.Second), Nonce: "n0"}} {
		if err := after.report(ota.Report{Device: dev, State: ota.StateRolledBack}, sig, "192.168.1.66:1"); !errors.Is(err, errReplay) {
			t.Fatalf("request signed at %s replayed after a restart: %v, want errReplay", sig.Time, err)
		}
	}
	if err := after.report(ota.Report{Device: dev, State: ota.StateHealthy}, ota.Signature{Time: at.Add(time.Second), Nonce: "n2"}, "192.168.1.20:1"); err != nil {
		t.Fatalf("the device's next request after a restart: %v", err)
	}
}
