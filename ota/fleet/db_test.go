package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/pgtest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func device(id, key, state string, seen time.Time) Device {
	return Device{DeviceStatus: ota.DeviceStatus{ID: id, Name: "tiny", Version: "1.0.0", State: state,
		Addr: "192.168.1.20:40000", LastSeen: seen.UTC()}, Key: key, Contacts: 1}
}

// storeTests run on every backend; newDB gives an empty database (its DSN).
var storeTests = []struct {
	name string
	run  func(t *testing.T, newDB func(*testing.T) string)
}{
	{"OpenEmptyDatabase", testOpenEmptyDatabase},
	{"MigrateFromPreviousSchema", testMigrateFromPreviousSchema},
	{"NewerSchemaRefused", testNewerSchemaRefused},
	{"HistoryCap", testHistoryCap},
	{"PinnedKeyKept", testPinnedKeyKept},
	{"DeleteForgetsHistory", testDeleteForgetsHistory},
	{"ReplayRefused", testReplayRefused},
	{"AutomaticPause", testAutomaticPause},
	{"RolloutsAndPoliciesSurviveReopen", testRolloutsAndPoliciesSurviveReopen},
}

// TestStore runs storeTests on a SQLite file and on PostgreSQL (a server of its own).
func TestStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		for _, st := range storeTests {
			t.Run(st.name, func(t *testing.T) {
				st.run(t, func(t *testing.T) string { return filepath.Join(t.TempDir(), "sub", "devices.db") })
			})
		}
	})
	t.Run("postgres", func(t *testing.T) {
		pg := pgtest.Start(t)
		for _, st := range storeTests {
			t.Run(st.name, func(t *testing.T) { st.run(t, func(t *testing.T) string { return pg.NewDB(t) }) })
		}
	})
}

func schemaVersion(t *testing.T, s *DB) int {
	t.Helper()
	var v int
	if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func testOpenEmptyDatabase(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	path := newDB(t)
	s, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v := schemaVersion(t, s); v != SchemaVersion {
		t.Fatalf("schema %d after opening a new database, want %d", v, SchemaVersion)
	}
	now := time.Now()
	d := device("tiny-1", "KEY", ota.StateHealthy, now)
	d.LastSigned = now.Truncate(time.Second).UTC()
	if err := s.Put(ctx, d, &Event{Time: now, State: ota.StateHealthy, Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	devs, err := s.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0] != d {
		t.Fatalf("devices = %+v, %v; want [%+v]", devs, err, d)
	}
	h, err := s.History(ctx, "tiny-1", 0)
	if err != nil || len(h) != 1 || h[0].State != ota.StateHealthy || !h[0].Time.Equal(now) {
		t.Fatalf("history = %+v, %v", h, err)
	}
	// Opening again migrates nothing and keeps the data.
	s.Close()
	s, err = Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if devs, err := s.Devices(ctx); err != nil || len(devs) != 1 {
		t.Fatalf("after reopening: %+v, %v", devs, err)
	}
}

func testMigrateFromPreviousSchema(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	path := newDB(t)
	old, err := open(ctx, path, 0, SchemaVersion-1)
	if err != nil {
		t.Fatal(err)
	}
	// Rows as the previous kiln wrote them (its columns only).
	seen := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := device("tiny-1", "KEY", ota.StateInstalled, seen)
	if _, err := old.db.Exec(old.q(`INSERT INTO devices (id, key, name, version, state, addr, last_seen, contacts)
		VALUES (?,?,?,?,?,?,?,?)`), d.ID, d.Key, d.Name, d.Version, d.State, d.Addr, seen.UnixNano(), d.Contacts); err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.Exec(old.q(`INSERT INTO events (device_id, at, state, version) VALUES (?,?,?,?)`),
		d.ID, seen.UnixNano(), ota.StateInstalled, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if v := schemaVersion(t, old); v != SchemaVersion-1 {
		t.Fatalf("old database at schema %d", v)
	}
	old.Close()

	s, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatalf("open a database of the previous schema: %v", err)
	}
	defer s.Close()
	if v := schemaVersion(t, s); v != SchemaVersion {
		t.Fatalf("schema %d after migration, want %d", v, SchemaVersion)
	}
	devs, err := s.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0] != d {
		t.Fatalf("devices after migration = %+v, %v; want [%+v]", devs, err, d)
	}
	d.State = ota.StateHealthy
	if err := s.Put(ctx, d, &Event{Time: seen, State: ota.StateHealthy}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, d.ID, 0)
	if err != nil || len(h) != 2 || h[0].State != ota.StateHealthy || h[1].State != ota.StateInstalled {
		t.Fatalf("history after migration = %+v, %v", h, err)
	}
	// What the new schema adds works on the migrated database.
	if err := s.SetRollout(ctx, NewRollout("1.1.0", 1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, d, &Event{Time: seen, State: ota.StateRolledBack, Target: "1.1.0"}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Rollout(ctx, "1.1.0"); err != nil || !r.Paused || r.RolledBack != 1 {
		t.Fatalf("rollout on the migrated database: %+v, %v", r, err)
	}
}

func testNewerSchemaRefused(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	path := newDB(t)
	s, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	newer := SchemaVersion + 3
	if _, err := s.db.Exec(s.q(`UPDATE schema_version SET version = ?`), newer); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path, 0)
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("open a database of schema %d: %v, want ErrIncompatible", newer, err)
	}
	want := fmt.Sprintf("database schema %d; this kiln reads 1–%d", newer, SchemaVersion)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func testHistoryCap(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	s, err := Open(ctx, newDB(t), 5)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	other := device("other-1", "KEY2", ota.StateHealthy, start)
	if err := s.Put(ctx, other, &Event{Time: start, State: ota.StateHealthy}); err != nil {
		t.Fatal(err)
	}
	d := device("chatty-1", "KEY", "", start)
	for i := range 50 {
		at := start.Add(time.Duration(i) * time.Second)
		if err := s.Put(ctx, d, &Event{Time: at, State: ota.StateChecking, Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 5 {
		t.Fatalf("%d events kept, want 5", len(h))
	}
	for i, e := range h {
		if want := fmt.Sprint(49 - i); e.Message != want {
			t.Fatalf("event %d is %q, want the newest first (%q)", i, e.Message, want)
		}
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM events`).Scan(&n); err != nil || n != 6 {
		t.Fatalf("%d events stored in all (%v), want 5 + the other device's 1", n, err)
	}
	if h, _ := s.History(ctx, d.ID, 2); len(h) != 2 {
		t.Fatalf("History with limit 2 gave %d events", len(h))
	}
}

func testPinnedKeyKept(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	s, err := Open(ctx, newDB(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.Put(ctx, device("tiny-1", "REAL", ota.StateHealthy, now), nil); err != nil {
		t.Fatal(err)
	}
	spoof := device("tiny-1", "ATTACKER", ota.StateRolledBack, now)
	if err := s.Put(ctx, spoof, &Event{Time: now, State: ota.StateRolledBack}); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Put with another key: %v, want ErrKeyMismatch", err)
	}
	devs, _ := s.Devices(ctx)
	if len(devs) != 1 || devs[0].Key != "REAL" || devs[0].State != ota.StateHealthy {
		t.Fatalf("devices after a spoofed Put: %+v", devs)
	}
	if h, _ := s.History(ctx, "tiny-1", 0); len(h) != 0 {
		t.Fatalf("spoofed event stored: %+v", h)
	}
}

func testDeleteForgetsHistory(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	s, err := Open(ctx, newDB(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.Put(ctx, device("tiny-1", "K", ota.StateHealthy, now), &Event{Time: now, State: ota.StateHealthy}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "tiny-1"); err != nil {
		t.Fatal(err)
	}
	if devs, _ := s.Devices(ctx); len(devs) != 0 {
		t.Fatalf("devices after Delete: %+v", devs)
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events left after Delete (%v)", n, err)
	}
}

func TestDamagedFile(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()

	// A valid database with some rows, then damaged in three ways.
	good := filepath.Join(dir, "good.db")
	s, err := Open(ctx, good, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 200 {
		d := device(fmt.Sprintf("dev-%d", i), "K", ota.StateHealthy, now)
		d.Message = strings.Repeat("x", 500)
		if err := s.Put(ctx, d, &Event{Time: now, State: ota.StateHealthy, Message: d.Message}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 16<<10 {
		t.Fatalf("test database only %d bytes", len(data))
	}
	scrambled := append([]byte(nil), data...)
	for i := 8 << 10; i < len(scrambled); i += 7 {
		scrambled[i] ^= 0x5a
	}
	for name, content := range map[string][]byte{
		"not a database": []byte(strings.Repeat("this is not SQLite\n", 300)),
		"truncated":      data[:len(data)/3],
		"scrambled":      scrambled,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(ctx, path, 0)
			if err == nil {
				s.Close()
				t.Fatal("damaged database opened without an error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("error %q does not name the file and what to do", err)
			}
		})
	}
}

// kiln devices --served opens the database while kiln serve has it open.
func TestOpenWhileInUse(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "devices.db")
	w, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now()
	if err := w.Put(ctx, device("tiny-1", "K", ota.StateHealthy, now), &Event{Time: now, State: ota.StateHealthy}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatalf("second open while in use: %v", err)
	}
	defer r.Close()
	if devs, err := r.Devices(ctx); err != nil || len(devs) != 1 {
		t.Fatalf("devices seen by the second opener: %+v, %v", devs, err)
	}
	if err := w.Put(ctx, device("tiny-2", "K2", ota.StateChecking, now), nil); err != nil {
		t.Fatalf("write while another opener has the file: %v", err)
	}
	if devs, err := r.Devices(ctx); err != nil || len(devs) != 2 {
		t.Fatalf("the second opener does not see the new device: %+v, %v", devs, err)
	}
}

func testReplayRefused(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	dsn := newDB(t)
	a, err := Open(ctx, dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, 0) // another server on the same database
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	now := time.Now()
	d := device("tiny-1", "K", ota.StateInstalled, now)
	d.LastSigned, d.Nonce = now, "n1"
	ev := &Event{Time: now, State: ota.StateInstalled, Target: "1.1.0"}
	if err := a.Put(ctx, d, ev); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, d, ev); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same request through another connection: %v, want ErrReplay", err)
	}
	d.Nonce = "n2"
	if err := b.Put(ctx, d, ev); err != nil {
		t.Fatalf("the next request: %v", err)
	}
	if h, _ := a.History(ctx, d.ID, 0); len(h) != 2 {
		t.Fatalf("%d events, want 2 (the replay not stored)", len(h))
	}
	// Nonces too old to matter are forgotten.
	d.Nonce, d.LastSigned = "n3", now.Add(time.Hour)
	if err := a.Put(ctx, d, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.db.QueryRow(a.q(`SELECT count(*) FROM nonces WHERE device_id = ?`), d.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d nonces kept (%v), want 1", n, err)
	}
}
