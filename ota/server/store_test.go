package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// startWithStore starts a server on 127.0.0.1 over dir with the device database at db; the
// returned function stops it and closes the database.
func startWithStore(t *testing.T, dir, db string) (*server.Server, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := fleet.Open(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0", Store: store})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		store.Close()
		t.Fatal(err)
	}
	return s, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestDevicesSurviveRestart(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	otatest.Publish(t, dir, keys, "1.1.0", otatest.Payload(4<<10, 2), repo.Options{NoDeltas: true})
	db := filepath.Join(t.TempDir(), "devices.db")

	s, stop := startWithStore(t, dir, db)
	pi := newDevice("tiny", "1.0.0")
	steps := []struct {
		path string
		body any
	}{
		{"/v1/check", ota.CheckRequest{Device: pi.dev}},
		{"/v1/check", ota.CheckRequest{Device: pi.dev}}, // unchanged: no new history entry
		{"/v1/report", ota.Report{Device: pi.dev, State: ota.StateDownloading, Target: "1.1.0"}},
		{"/v1/report", ota.Report{Device: pi.dev, State: ota.StateInstalled, Target: "1.1.0"}},
		{"/v1/report", ota.Report{Device: pi.dev, State: ota.StateRolledBack, Target: "1.1.0", Message: "1.1.0 never became healthy"}},
	}
	for _, st := range steps {
		if resp, body := pi.post(t, s.URL()+st.path, st.body); resp.StatusCode/100 != 2 {
			t.Fatalf("%s: %s %s", st.path, resp.Status, body)
		}
	}
	// A report someone on the LAN captured, to replay after the restart.
	captured, _ := json.Marshal(ota.Report{Device: pi.dev, State: ota.StateHealthy, Target: "1.1.0"})
	capturedSig := ota.SignRequest(pi.key, "/v1/report", captured, time.Now(), ota.NewNonce())
	if resp := postSigned(t, s.URL()+"/v1/report", captured, capturedSig); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %s", resp.Status)
	}
	if resp, body := pi.post(t, s.URL()+"/v1/report", steps[4].body); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %s %s", resp.Status, body)
	}
	before := row(s, pi.dev.ID)
	if before == nil {
		t.Fatal("device not in the table")
	}
	stop()

	s, stop = startWithStore(t, dir, db)
	defer stop()
	after := row(s, pi.dev.ID)
	if after == nil {
		t.Fatal("device gone after a restart")
	}
	if *after != *before {
		t.Fatalf("after a restart the device is\n%+v\nwas\n%+v", *after, *before)
	}
	hist, err := s.History(context.Background(), pi.dev.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, e := range hist {
		states = append(states, e.State)
	}
	want := []string{ota.StateRolledBack, ota.StateHealthy, ota.StateRolledBack, ota.StateInstalled, ota.StateDownloading, "update-available"}
	if len(states) != len(want) {
		t.Fatalf("history after a restart: %q, want %q", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("history after a restart: %q, want %q", states, want)
		}
	}
	if hist[0].Message != "1.1.0 never became healthy" || hist[5].Target != "1.1.0" {
		t.Fatalf("history lost details: %+v", hist)
	}

	// The pinned key still holds: a report under the device's ID signed by another key is
	// refused, and the table and history are unchanged.
	attacker := newDevice("tiny", "1.0.0")
	spoof := ota.Report{Device: pi.dev, State: ota.StateHealthy, Target: "1.1.0"}
	spoof.Key = attacker.dev.Key
	if resp, body := attacker.post(t, s.URL()+"/v1/report", spoof); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("spoofed report after a restart: %s %s, want 403", resp.Status, body)
	}
	// A replay of a report signed before the restart is refused too.
	if resp := postSigned(t, s.URL()+"/v1/report", captured, capturedSig); resp.StatusCode != http.StatusConflict {
		t.Fatalf("replayed report after a restart: %s, want 409", resp.Status)
	}
	if r := row(s, pi.dev.ID); r == nil || r.State != ota.StateRolledBack {
		t.Fatalf("spoofed or replayed report changed the device: %+v", r)
	}

	// The device itself carries on where it left off (its next request, signed a second later).
	next, _ := json.Marshal(ota.Report{Device: pi.dev, State: ota.StateChecking})
	sig := ota.SignRequest(pi.key, "/v1/report", next, time.Now().Add(time.Second), ota.NewNonce())
	if resp := postSigned(t, s.URL()+"/v1/report", next, sig); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("real report after a restart: %s", resp.Status)
	}
	if hist, _ := s.History(context.Background(), pi.dev.ID, 0); len(hist) != len(want)+1 {
		t.Fatalf("history has %d events after one more report, want %d", len(hist), len(want)+1)
	}
}

// postSigned posts body with the signature header sig.
func postSigned(t *testing.T, url string, body []byte, sig string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set(ota.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
