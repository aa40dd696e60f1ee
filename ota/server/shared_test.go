package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/internal/pgtest"
	"github.com/kilnproject/kiln/ota/repo"
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
