package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// The server's rollouts, holds and channels decide what a device installs, but only among the
// signed targets: a device outside a rollout installs the older version it is offered.
func TestRolloutHoldAndChannel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki := map[string][]byte{"1.0.0": otatest.Payload(1<<20, 3)}
	uki["1.1.0"] = append(bytes.Clone(uki["1.0.0"]), "1.1.0"...)
	uki["1.2.0"] = append(bytes.Clone(uki["1.1.0"]), "1.2.0"...)
	uki["1.3.0-beta.1"] = append(bytes.Clone(uki["1.2.0"]), "beta"...)
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		otatest.Publish(t, dir, keys, v, uki[v], repo.Options{NoDeltas: true})
	}
	store, err := fleet.Open(ctx, filepath.Join(t.TempDir(), "devices.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// 1.2.0 goes to nobody yet.
	if err := store.SetRollout(ctx, fleet.NewRollout("1.2.0", 0)); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())

	d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
		root: keys.Root, server: srv.URL(), uki: uki, health: map[string]string{}}
	os.MkdirAll(d.linux(), 0o755)
	os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), uki["1.0.0"], 0o644)
	row := func() ota.DeviceStatus {
		rows := srv.Devices()
		if len(rows) != 1 {
			t.Fatalf("device table has %d rows: %+v", len(rows), rows)
		}
		return rows[0]
	}

	// Outside the rollout of 1.2.0, the device on 1.0.0 is offered 1.1.0 and installs it,
	// although the signed targets hold the newer 1.2.0.
	d.boot()
	a := d.agent("1.0.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	// (CheckAndInstall ends in an error saying it reboots.)
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 1 {
		t.Fatalf("install: %v, %d reboots", err, d.reboots)
	}
	if got := d.files(); !slices.Contains(got, "tiny-1.1.0+3.efi") {
		t.Fatalf("ESP after install: %v, want 1.1.0 on trial", got)
	}
	if v := d.boot(); v != "1.1.0" {
		t.Fatalf("booted %s", v)
	}
	a = d.agent("1.1.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
		t.Fatalf("check on 1.1.0 outside the rollout of 1.2.0: %v, want ErrNoUpdate", err)
	}
	id := row().ID
	hist, _ := srv.History(ctx, id, 1)
	if len(hist) != 1 || hist[0].Message != "1.2.0 is rolled out to 0% of devices; this one is not among them yet" {
		t.Errorf("last event %+v; want it to say why 1.2.0 is not offered", hist)
	}

	// The owner holds the device on 1.1.0, then rolls 1.2.0 out to every device: still nothing.
	if err := store.SetPolicy(ctx, fleet.Policy{ID: id, Hold: "1.1.0"}); err != nil {
		t.Fatal(err)
	}
	if err := store.SetRollout(ctx, fleet.NewRollout("1.2.0", fleet.AllDevices)); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
		t.Fatalf("check of a device held on 1.1.0: %v, want ErrNoUpdate", err)
	}
	if d.reboots != 1 {
		t.Fatal("a held device rebooted")
	}

	// Moved to the beta channel, it installs the signed beta, not the stable 1.2.0.
	if _, err := repo.Publish(ctx, dir, keys, otatest.Bundle(t, "1.3.0-beta.1", uki["1.3.0-beta.1"],
		func(b *ota.Bundle) { b.Channel = "beta" }), repo.Options{NoDeltas: true}); err != nil {
		t.Fatal(err)
	}
	if err := store.SetPolicy(ctx, fleet.Policy{ID: id, Channel: "beta"}); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 2 {
		t.Fatalf("install on the beta channel: %v, %d reboots", err, d.reboots)
	}
	if got := d.files(); !slices.Contains(got, "tiny-1.3.0-beta.1+3.efi") {
		t.Fatalf("ESP after the beta install: %v", got)
	}
	if r := row(); r.State != ota.StateInstalled || r.Target != "1.3.0-beta.1" {
		t.Fatalf("device after the beta install: %+v", r)
	}
}
