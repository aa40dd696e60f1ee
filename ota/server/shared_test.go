package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/internal/pgtest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// Two servers sharing one database answer for each other: what a device reported to one, the
// other knows; a request one accepted, the other refuses as a replay; a rollout set through
// the database reaches both.
func TestServersShareADatabase(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	otatest.Publish(t, dir, keys, "1.1.0", otatest.Payload(4<<10, 2), repo.Options{NoDeltas: true})
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "devices.db")
			if backend == "postgres" {
				db = pgtest.Start(t).NewDB(t)
			}
			a, stopA := startWithStore(t, dir, db)
			defer stopA()
			b, stopB := startWithStore(t, dir, db)
			defer stopB()

			pi := newDevice("tiny", "1.0.0")
			// Seen first by b (a check), then it reports a rollback to a.
			if resp, body := pi.post(t, b.URL()+"/v1/check", ota.CheckRequest{Device: pi.dev}); resp.StatusCode != http.StatusOK {
				t.Fatalf("check on b: %s %s", resp.Status, body)
			}
			rep, _ := json.Marshal(ota.Report{Device: pi.dev, State: ota.StateRolledBack, Target: "1.1.0", Message: "1.1.0 never became healthy"})
			sig := ota.SignRequest(pi.key, "/v1/report", rep, time.Now(), ota.NewNonce())
			if resp := postSigned(t, a.URL()+"/v1/report", rep, sig); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("report to a: %s", resp.Status)
			}
			// The same request replayed to b is refused.
			if resp := postSigned(t, b.URL()+"/v1/report", rep, sig); resp.StatusCode != http.StatusConflict {
				t.Fatalf("report replayed to b: %s, want 409", resp.Status)
			}
			// b's next check keeps the state a recorded.
			if resp, body := pi.post(t, b.URL()+"/v1/check", ota.CheckRequest{Device: pi.dev}); resp.StatusCode != http.StatusOK {
				t.Fatalf("check on b: %s %s", resp.Status, body)
			} else if !strings.Contains(string(body), "the rollout of 1.1.0 is paused automatically") {
				t.Fatalf("check on b after the rollback reported to a: %s", body)
			}
			if r := row(b, pi.dev.ID); r == nil || r.State != ota.StateRolledBack || r.Target != "1.1.0" {
				t.Fatalf("b's table after the report to a: %+v", r)
			}
			// Another key under the same ID is refused by both.
			spoofer := newDevice("tiny", "1.0.0")
			spoof := ota.Report{Device: pi.dev, State: ota.StateHealthy, Target: "1.1.0"}
			spoof.Key = spoofer.dev.Key
			for _, s := range []string{a.URL(), b.URL()} {
				if resp, body := spoofer.post(t, s+"/v1/report", spoof); resp.StatusCode/100 == 2 {
					t.Fatalf("spoofed report to %s: %s %s", s, resp.Status, body)
				}
			}
			// One history, written by both, each event once.
			hist, err := a.History(context.Background(), pi.dev.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, e := range hist {
				states = append(states, e.State)
			}
			if got := strings.Join(states, " "); got != "up-to-date rolled-back update-available" {
				t.Fatalf("history: %s", got)
			}
			// The rollout paused itself; resuming it through either server's database reaches both.
			ctx := context.Background()
			store, err := fleet.Open(ctx, db, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			other := newDevice("tiny", "1.0.0")
			for _, s := range []string{a.URL(), b.URL()} {
				if _, body := other.post(t, s+"/v1/check", ota.CheckRequest{Device: other.dev}); !strings.Contains(string(body), `"update":false`) {
					t.Fatalf("check on %s while 1.1.0 is paused: %s", s, body)
				}
			}
			if err := store.SetRollout(ctx, fleet.NewRollout("1.1.0", fleet.AllDevices)); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{a.URL(), b.URL()} {
				if _, body := other.post(t, s+"/v1/check", ota.CheckRequest{Device: other.dev}); !strings.Contains(string(body), `"update":true`) {
					t.Fatalf("check on %s after resuming: %s", s, body)
				}
			}
		})
	}
}

// Behind a proxy the server takes the device's address from X-Real-IP: the owner-only device
// table is not served to the LAN through a proxy on this machine.
func TestBehindProxy(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0", Proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	get := func(peer, realIP string) int {
		r := httptest.NewRequest(http.MethodGet, "/v1/devices", nil)
		r.RemoteAddr = peer
		if realIP != "" {
			r.Header.Set("X-Real-IP", realIP)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, c := range []struct {
		peer, realIP string
		want         int
	}{
		{"127.0.0.1:5000", "192.168.1.50", http.StatusForbidden}, // a LAN host through the proxy
		{"127.0.0.1:5000", "127.0.0.1", http.StatusOK},           // the owner through the proxy
		{"127.0.0.1:5000", "", http.StatusBadRequest},            // the proxy must say who asks
		{"192.168.1.50:5000", "127.0.0.1", http.StatusForbidden}, // not a proxy: its header is ignored
	} {
		if got := get(c.peer, c.realIP); got != c.want {
			t.Errorf("GET /v1/devices from %s (X-Real-IP %q): %d, want %d", c.peer, c.realIP, got, c.want)
		}
	}
	// New device IDs are budgeted per device address, not per proxy.
	for i := range 20 {
		d := newDevice("tiny", "1.0.0")
		body, _ := json.Marshal(ota.CheckRequest{Device: d.dev})
		r := httptest.NewRequest(http.MethodPost, "/v1/check", bytes.NewReader(body))
		r.RemoteAddr = "127.0.0.1:5000"
		r.Header.Set("X-Real-IP", fmt.Sprintf("192.168.1.%d", 10+i))
		r.Header.Set(ota.SignatureHeader, ota.SignRequest(d.key, "/v1/check", body, time.Now(), ota.NewNonce()))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("device %d through the proxy: %d %s", i, w.Code, w.Body)
		}
	}
	if rows := s.Devices(); len(rows) != 20 || !strings.HasPrefix(rows[0].Addr, "192.168.1.") {
		t.Fatalf("device table through the proxy: %d rows, first %+v", len(rows), rows[0])
	}
}
