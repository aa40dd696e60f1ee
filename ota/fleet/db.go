package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // pure-Go PostgreSQL driver "pgx"
	"github.com/kilnproject/kiln/ota"
	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"
)

// migration is one schema step. Postgres is its PostgreSQL form where SQLite's does not do
// (64-bit integers, booleans, sequences); "" when the same.
type migration struct {
	sqlite, postgres string
}

// migrations[i] brings the schema from version i to i+1. Append only: never edit a released one.
var migrations = []migration{
	{sqlite: // 1: devices and their pinned keys.
	`CREATE TABLE devices (
		id        TEXT PRIMARY KEY,
		key       TEXT NOT NULL,
		name      TEXT NOT NULL DEFAULT '',
		version   TEXT NOT NULL DEFAULT '',
		board     TEXT NOT NULL DEFAULT '',
		channel   TEXT NOT NULL DEFAULT '',
		state     TEXT NOT NULL DEFAULT '',
		target    TEXT NOT NULL DEFAULT '',
		offered   TEXT NOT NULL DEFAULT '',
		message   TEXT NOT NULL DEFAULT '',
		addr      TEXT NOT NULL DEFAULT '',
		last_seen INTEGER NOT NULL DEFAULT 0,
		contacts  INTEGER NOT NULL DEFAULT 0,
		reported  INTEGER NOT NULL DEFAULT 0
	)`, postgres: `CREATE TABLE devices (
		id        TEXT PRIMARY KEY,
		key       TEXT NOT NULL,
		name      TEXT NOT NULL DEFAULT '',
		version   TEXT NOT NULL DEFAULT '',
		board     TEXT NOT NULL DEFAULT '',
		channel   TEXT NOT NULL DEFAULT '',
		state     TEXT NOT NULL DEFAULT '',
		target    TEXT NOT NULL DEFAULT '',
		offered   TEXT NOT NULL DEFAULT '',
		message   TEXT NOT NULL DEFAULT '',
		addr      TEXT NOT NULL DEFAULT '',
		last_seen BIGINT NOT NULL DEFAULT 0,
		contacts  BIGINT NOT NULL DEFAULT 0,
		reported  BOOLEAN NOT NULL DEFAULT FALSE
	)`},
	{sqlite: // 2: the history of each device's state changes.
	`CREATE TABLE events (
		seq       INTEGER PRIMARY KEY AUTOINCREMENT,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		at        INTEGER NOT NULL,
		state     TEXT NOT NULL,
		version   TEXT NOT NULL DEFAULT '',
		target    TEXT NOT NULL DEFAULT '',
		message   TEXT NOT NULL DEFAULT '',
		addr      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX events_device ON events(device_id, seq)`, postgres: `CREATE TABLE events (
		seq       BIGSERIAL PRIMARY KEY,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		at        BIGINT NOT NULL,
		state     TEXT NOT NULL,
		version   TEXT NOT NULL DEFAULT '',
		target    TEXT NOT NULL DEFAULT '',
		message   TEXT NOT NULL DEFAULT '',
		addr      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX events_device ON events(device_id, seq)`},
	{sqlite: // 3: when the device's newest request was signed, so replays stay refused after a restart.
	`ALTER TABLE devices ADD COLUMN last_signed INTEGER NOT NULL DEFAULT 0`,
		postgres: `ALTER TABLE devices ADD COLUMN last_signed BIGINT NOT NULL DEFAULT 0`},
	{sqlite: // 4: staged rollouts, what each device made of the versions it tried, the owner's
	// holds and channels per device; the nonces of recent requests, so that servers sharing
	// the database refuse each other's replays.
	`CREATE TABLE rollouts (
		version      TEXT PRIMARY KEY,
		share        INTEGER NOT NULL,
		paused       INTEGER NOT NULL DEFAULT 0,
		reason       TEXT NOT NULL DEFAULT '',
		max_failures INTEGER NOT NULL,
		min_devices  INTEGER NOT NULL,
		updated      INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE outcomes (
		version   TEXT NOT NULL,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		outcome   TEXT NOT NULL,
		at        INTEGER NOT NULL,
		PRIMARY KEY (version, device_id)
	);
	CREATE TABLE policies (
		device_id TEXT PRIMARY KEY,
		hold      TEXT NOT NULL DEFAULT '',
		channel   TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE nonces (
		device_id TEXT NOT NULL,
		nonce     TEXT NOT NULL,
		at        INTEGER NOT NULL,
		PRIMARY KEY (device_id, nonce)
	)`, postgres: `CREATE TABLE rollouts (
		version      TEXT PRIMARY KEY,
		share        INTEGER NOT NULL,
		paused       BOOLEAN NOT NULL DEFAULT FALSE,
		reason       TEXT NOT NULL DEFAULT '',
		max_failures INTEGER NOT NULL,
		min_devices  INTEGER NOT NULL,
		updated      BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE outcomes (
		version   TEXT NOT NULL,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		outcome   TEXT NOT NULL,
		at        BIGINT NOT NULL,
		PRIMARY KEY (version, device_id)
	);
	CREATE TABLE policies (
		device_id TEXT PRIMARY KEY,
		hold      TEXT NOT NULL DEFAULT '',
		channel   TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE nonces (
		device_id TEXT NOT NULL,
		nonce     TEXT NOT NULL,
		at        BIGINT NOT NULL,
		PRIMARY KEY (device_id, nonce)
	)`},
}

// SchemaVersion is the newest database schema this kiln reads and writes.
var SchemaVersion = len(migrations)

// DB is a Store in a SQLite file or a PostgreSQL database; both have the same schema versions.
type DB struct {
	db         *sql.DB
	name       string // the file, or the URL without its password
	pg         bool
	maxHistory int
}

// SQLite is the name DB had when it only kept SQLite files.
type SQLite = DB

// IsPostgres reports whether dsn names a PostgreSQL database (postgres://… or postgresql://…)
// rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the device database dsn and brings its schema up to date: a SQLite file
// (created with its directory if needed), or a PostgreSQL database given as
// postgres://user:password@host:port/db?sslmode=… (host=/dir for a unix socket).
// maxHistory caps the events kept per device (DefaultHistory if <= 0).
func Open(ctx context.Context, dsn string, maxHistory int) (*DB, error) {
	return open(ctx, dsn, maxHistory, SchemaVersion)
}

// open migrates to schema version upto (< SchemaVersion only in tests making old databases).
func open(ctx context.Context, dsn string, maxHistory, upto int) (*DB, error) {
	if maxHistory <= 0 {
		maxHistory = DefaultHistory
	}
	s := &DB{name: dsn, maxHistory: maxHistory}
	var err error
	if IsPostgres(dsn) {
		s.pg = true
		if u, perr := url.Parse(dsn); perr == nil {
			s.name = u.Redacted()
		} else {
			return nil, fmt.Errorf("device database: %s is not a postgres:// URL: %w", "the --db value", errors.Unwrap(perr))
		}
		s.db, err = sql.Open("pgx", dsn)
	} else {
		if strings.ContainsAny(dsn, "?#") {
			return nil, fmt.Errorf("device database %q: the file name must not contain ? or #", dsn)
		}
		if err := os.MkdirAll(filepath.Dir(dsn), 0o700); err != nil {
			return nil, fmt.Errorf("device database: %w", err)
		}
		s.db, err = sql.Open("sqlite", dsn+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)")
		if err == nil {
			// One connection: SQLite writes one transaction at a time anyway, and queued
			// requests wait in Go rather than retrying on a busy database.
			s.db.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("device database %s: %w", s.name, err)
	}
	if err := s.migrate(ctx, upto); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// q writes query's ? placeholders as PostgreSQL's $1, $2 … (the queries have no ? in literals).
func (s *DB) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// damaged wraps an error reading the database with what the user can do about it.
func (s *DB) damaged(err error) error {
	if s.pg {
		return fmt.Errorf("device database %s: %w (check that PostgreSQL runs and the URL's user may use the database)", s.name, err)
	}
	return fmt.Errorf("device database %s is unreadable: %w (if it is damaged, move it aside and kiln starts a new one)", s.name, err)
}

// lockID serialises migrations of one PostgreSQL database by several servers starting at once.
const lockID = 0x6b696c6e // "kiln"

func (s *DB) migrate(ctx context.Context, upto int) error {
	if err := s.db.PingContext(ctx); err != nil {
		return s.damaged(err)
	}
	if !s.pg {
		var check string
		if err := s.db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil {
			return s.damaged(err)
		} else if check != "ok" {
			return s.damaged(errors.New(check))
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.damaged(err)
	}
	defer tx.Rollback()
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID); err != nil {
			return s.damaged(err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return s.damaged(err)
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return s.damaged(err)
		}
	case err != nil:
		return s.damaged(err)
	}
	if v > SchemaVersion || v < 0 {
		return fmt.Errorf("%w: %s: database schema %d; this kiln reads 1–%d (use a newer kiln, or another --db)",
			ErrIncompatible, s.name, v, SchemaVersion)
	}
	if v >= upto {
		return nil // up to date: nothing to write (a reader may share the file with kiln serve)
	}
	for ; v < upto; v++ {
		m := migrations[v].sqlite
		if s.pg && migrations[v].postgres != "" {
			m = migrations[v].postgres
		}
		if _, err := tx.ExecContext(ctx, m); err != nil {
			return fmt.Errorf("device database %s: migrate to schema %d: %w", s.name, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(s.q(`UPDATE schema_version SET version = ?`)), v); err != nil {
		return s.damaged(err)
	}
	if err := tx.Commit(); err != nil {
		return s.damaged(err)
	}
	return nil
}

// Name is the database's file, or its URL without the password.
func (s *DB) Name() string { return s.name }

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

const deviceColumns = `id, key, name, version, board, channel, state, target, offered, message, addr, last_seen, contacts, reported, last_signed`

// Devices implements Store.
func (s *DB) Devices(ctx context.Context) ([]Device, error) {
	return s.devices(ctx, ` ORDER BY last_seen DESC, id`)
}

func (s *DB) devices(ctx context.Context, where string, args ...any) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+deviceColumns+` FROM devices`+where), args...)
	if err != nil {
		return nil, s.damaged(err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		var seen, signed int64
		if err := rows.Scan(&d.ID, &d.Key, &d.Name, &d.Version, &d.Board, &d.Channel, &d.State, &d.Target,
			&d.Offered, &d.Message, &d.Addr, &seen, &d.Contacts, &d.Reported, &signed); err != nil {
			return nil, s.damaged(err)
		}
		d.LastSeen = time.Unix(0, seen).UTC()
		if signed != 0 {
			d.LastSigned = time.Unix(0, signed).UTC()
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.damaged(err)
	}
	return out, nil
}

// Device implements Store.
func (s *DB) Device(ctx context.Context, id string) (Device, bool, error) {
	ds, err := s.devices(ctx, ` WHERE id = ?`, id)
	if err != nil || len(ds) == 0 {
		return Device{}, false, err
	}
	return ds[0], true, nil
}

// nonceWindow is how long a request's nonce is kept: longer than a signature is valid.
const nonceWindow = 2 * ota.SignatureWindow

// nonce records a request's nonce, refusing (ErrReplay) one seen before, and forgets the
// device's nonces too old to matter. Part of Put's transaction.
func (s *DB) nonce(ctx context.Context, tx *sql.Tx, id, nonce string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM nonces WHERE device_id = ? AND at < ?`), id, at.Add(-nonceWindow).UnixNano()); err != nil {
		return fmt.Errorf("device database %s: forget old nonces of %s: %w", s.name, id, err)
	}
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO nonces (device_id, nonce, at) VALUES (?,?,?) ON CONFLICT DO NOTHING`), id, nonce, at.UnixNano())
	if err != nil {
		return fmt.Errorf("device database %s: save a nonce of %s: %w", s.name, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: %s", ErrReplay, id)
	}
	return nil
}

// Put implements Store.
func (s *DB) Put(ctx context.Context, d Device, ev *Event) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("device database %s: %w", s.name, err)
	}
	defer tx.Rollback()
	var signed int64
	if !d.LastSigned.IsZero() {
		signed = d.LastSigned.UnixNano()
	}
	if d.Nonce != "" {
		if err := s.nonce(ctx, tx, d.ID, d.Nonce, d.LastSigned); err != nil {
			return err
		}
	}
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO devices (`+deviceColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, version=excluded.version, board=excluded.board,
			channel=excluded.channel, state=excluded.state, target=excluded.target, offered=excluded.offered,
			message=excluded.message, addr=excluded.addr, last_seen=excluded.last_seen,
			contacts=excluded.contacts, reported=excluded.reported, last_signed=excluded.last_signed
		WHERE devices.key = excluded.key`),
		d.ID, d.Key, d.Name, d.Version, d.Board, d.Channel, d.State, d.Target, d.Offered, d.Message, d.Addr,
		d.LastSeen.UnixNano(), d.Contacts, d.Reported, signed)
	if err != nil {
		return fmt.Errorf("device database %s: save %s: %w", s.name, d.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: %s", ErrKeyMismatch, d.ID)
	}
	if ev != nil {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO events (device_id, at, state, version, target, message, addr) VALUES (?,?,?,?,?,?,?)`),
			d.ID, ev.Time.UnixNano(), ev.State, ev.Version, ev.Target, ev.Message, ev.Addr); err != nil {
			return fmt.Errorf("device database %s: save history of %s: %w", s.name, d.ID, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM events WHERE device_id = ? AND seq <= (
			SELECT seq FROM events WHERE device_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`),
			d.ID, d.ID, s.maxHistory); err != nil {
			return fmt.Errorf("device database %s: trim history of %s: %w", s.name, d.ID, err)
		}
		if err := s.recordOutcome(ctx, tx, d.ID, ev); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("device database %s: %w", s.name, err)
	}
	return nil
}

// Delete implements Store.
func (s *DB) Delete(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM nonces WHERE device_id = ?`), id); err != nil {
		return fmt.Errorf("device database %s: forget %s: %w", s.name, id, err)
	}
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM devices WHERE id = ?`), id); err != nil {
		return fmt.Errorf("device database %s: forget %s: %w", s.name, id, err)
	}
	return nil
}

// History implements Store.
func (s *DB) History(ctx context.Context, id string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 1 << 62 // every event
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, state, version, target, message, addr FROM events
		WHERE device_id = ? ORDER BY seq DESC LIMIT ?`), id, limit)
	if err != nil {
		return nil, s.damaged(err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&at, &e.State, &e.Version, &e.Target, &e.Message, &e.Addr); err != nil {
			return nil, s.damaged(err)
		}
		e.Time = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.damaged(err)
	}
	return out, nil
}
