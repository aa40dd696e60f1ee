package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/fleet"
)

// kiln publish --rollout, kiln rollout and kiln devices --served against a running kiln serve:
// the server reads the rollouts from the database the commands write.
func TestRolloutCommands(t *testing.T) {
	env, stdout, stderr := otaEnv(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	payload := bytes.Repeat([]byte("kiln"), 16<<10)
	kiln := func(want int, args ...string) string {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		if code := run(t.Context(), env, args); code != want {
			t.Fatalf("kiln %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout, stderr)
		}
		return stdout.String()
	}
	kiln(0, "publish", "--repo", repoDir, "--no-delta", bundle(t, "1.0.0", payload))
	out := kiln(0, "publish", "--repo", repoDir, "--no-delta", "--rollout", "0%", bundle(t, "1.1.0", append(payload, 1)))
	if !strings.Contains(out, "rollout  0% of devices") {
		t.Fatalf("publish --rollout output:\n%s", out)
	}
	if out := kiln(0, "rollout"); !strings.Contains(out, "1.1.0") || !strings.Contains(out, "0%") {
		t.Fatalf("kiln rollout lists:\n%s", out)
	}
	kiln(2, "publish", "--repo", repoDir, "--db", "x.db", bundle(t, "1.2.0", payload))
	kiln(2, "publish", "--repo", repoDir, "--rollout", "150%", bundle(t, "1.2.0", payload))
	kiln(2, "rollout", "1.1.0", "150%")
	kiln(2, "rollout", "one", "10%")
	kiln(2, "rollout", "hold", "someone")

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	var serveOut, serveErr bytes.Buffer
	senv := *env
	senv.Stdout, senv.Stderr = &serveOut, &serveErr
	senv.Log = logrus.New() // the server logs from its own goroutine: not into the buffers kiln() resets
	senv.Log.SetOutput(&serveErr)
	go func() { done <- run(ctx, &senv, []string{"serve", "--repo", repoDir, "--addr", addr, "--no-mdns"}) }()
	pub, key, _ := ed25519.GenerateKey(nil)
	c := &client.Client{BaseURL: "http://" + addr, Key: key}
	dev := ota.Device{ID: ota.DeviceID("kiln-tiny", pub), Key: ota.KeyString(pub), Name: "kiln-tiny", Version: "1.0.0", Arch: "x86_64", Board: "x86_64-uefi", Channel: "stable"}
	check := func(what, wantOffer, wantMsg string) {
		t.Helper()
		var cr *ota.CheckResponse
		var err error
		for i := 0; i < 100; i++ {
			if cr, err = c.Check(ctx, dev); err == nil || !strings.Contains(err.Error(), "connection refused") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: check: %v", what, err)
		}
		got := ""
		if cr.Update {
			got = cr.Target.Version
		}
		if got != wantOffer || !strings.Contains(cr.Message, wantMsg) {
			t.Fatalf("%s: offered %q (%s), want %q (%s)", what, got, cr.Message, wantOffer, wantMsg)
		}
	}
	check("at 0%", "", "1.1.0 is rolled out to 0% of devices; this one is not among them yet")
	kiln(0, "rollout", "1.1.0", "100%")
	check("at 100%", "1.1.0", "update 1.1.0 is available")
	kiln(0, "rollout", "hold", dev.ID, "1.0.0")
	check("held", "", "held on 1.0.0")
	kiln(0, "rollout", "release", dev.ID)
	kiln(0, "rollout", "1.1.0", "pause")
	check("paused", "", "the rollout of 1.1.0 is paused by the owner")
	out = kiln(0, "rollout", "--json", "--max-failures", "5%", "--min-devices", "10", "1.1.0", "resume")
	var res struct{ Result fleet.Rollout }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Result.Paused || res.Result.MaxFailures != 500 || res.Result.MinDevices != 10 || res.Result.Share != fleet.AllDevices {
		t.Fatalf("kiln rollout --json resume: %s (%v)", out, err)
	}
	check("resumed", "1.1.0", "update 1.1.0 is available")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("kiln serve exited %d: %s", code, &serveErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kiln serve did not stop on cancel")
	}

	// kiln devices --served filters by state and version and prints a device's history.
	if out := kiln(0, "devices", "--served", "--state", "update-available", "--version", "1.1.0"); !strings.Contains(out, dev.ID) || !strings.Contains(out, "rolling out") {
		t.Fatalf("devices --served --state --version:\n%s", out)
	}
	if out := kiln(0, "devices", "--served", "--state", ota.StateRolledBack); !strings.Contains(out, "None of the 1 devices matches") {
		t.Fatalf("devices --served --state rolled-back:\n%s", out)
	}
	out = kiln(0, "devices", "--served", "--history", dev.ID)
	for _, want := range []string{"not among them yet", "held on 1.0.0", "paused by the owner", "update 1.1.0 is available"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history lacks %q:\n%s", want, out)
		}
	}
	kiln(2, "devices", "--state", "healthy")
}
