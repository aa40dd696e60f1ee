package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// recordOutcome notes what a reported event says about the version the device tried and
// pauses that version's rollout when too many devices rolled back. Part of Put's transaction.
func (s *DB) recordOutcome(ctx context.Context, tx *sql.Tx, id string, ev *Event) error {
	o := outcome(ev.State)
	if o == "" || ev.Target == "" {
		return nil
	}
	// A device still trying does not undo what it already made of the version.
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO outcomes (version, device_id, outcome, at) VALUES (?,?,?,?)
		ON CONFLICT(version, device_id) DO UPDATE SET outcome=excluded.outcome, at=excluded.at
		WHERE excluded.outcome <> 'trying' OR outcomes.outcome = 'trying'`),
		ev.Target, id, o, ev.Time.UnixNano()); err != nil {
		return fmt.Errorf("device database %s: save the outcome of %s on %s: %w", s.name, ev.Target, id, err)
	}
	if o != "rolled-back" {
		return nil
	}
	r, err := s.rollout(ctx, tx, ev.Target)
	if errors.Is(err, ErrNoRollout) {
		r = NewRollout(ev.Target, AllDevices)
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*), COUNT(CASE WHEN outcome = 'rolled-back' THEN 1 END)
			FROM outcomes WHERE version = ?`), ev.Target).Scan(&r.Tried, &r.RolledBack); err != nil {
			return s.damaged(err)
		}
	} else if err != nil {
		return err
	}
	if !r.shouldPause() {
		return nil
	}
	r.Paused, r.Reason, r.Updated = true, r.autoReason(), ev.Time
	return s.setRollout(ctx, tx, r)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const rolloutQuery = `SELECT r.version, r.share, r.paused, r.reason, r.max_failures, r.min_devices, r.updated,
		(SELECT COUNT(*) FROM outcomes o WHERE o.version = r.version),
		(SELECT COUNT(*) FROM outcomes o WHERE o.version = r.version AND o.outcome = 'rolled-back')
	FROM rollouts r`

func scanRollout(sc interface{ Scan(...any) error }) (Rollout, error) {
	var r Rollout
	var updated int64
	err := sc.Scan(&r.Version, &r.Share, &r.Paused, &r.Reason, &r.MaxFailures, &r.MinDevices, &updated, &r.Tried, &r.RolledBack)
	r.Updated = time.Unix(0, updated).UTC()
	return r, err
}

func (s *DB) rollout(ctx context.Context, q querier, version string) (Rollout, error) {
	r, err := scanRollout(q.QueryRowContext(ctx, s.q(rolloutQuery+` WHERE r.version = ?`), version))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Rollout{}, fmt.Errorf("%w: %s", ErrNoRollout, version)
	case err != nil:
		return Rollout{}, s.damaged(err)
	}
	return r, nil
}

func (s *DB) setRollout(ctx context.Context, q querier, r Rollout) error {
	if r.Updated.IsZero() {
		r.Updated = time.Now()
	}
	if _, err := q.ExecContext(ctx, s.q(`INSERT INTO rollouts (version, share, paused, reason, max_failures, min_devices, updated)
		VALUES (?,?,?,?,?,?,?) ON CONFLICT(version) DO UPDATE SET share=excluded.share, paused=excluded.paused,
			reason=excluded.reason, max_failures=excluded.max_failures, min_devices=excluded.min_devices, updated=excluded.updated`),
		r.Version, r.Share, r.Paused, r.Reason, r.MaxFailures, r.MinDevices, r.Updated.UnixNano()); err != nil {
		return fmt.Errorf("device database %s: save the rollout of %s: %w", s.name, r.Version, err)
	}
	return nil
}

// Rollout implements Store.
func (s *DB) Rollout(ctx context.Context, version string) (Rollout, error) {
	return s.rollout(ctx, s.db, version)
}

// Rollouts implements Store.
func (s *DB) Rollouts(ctx context.Context) ([]Rollout, error) {
	rows, err := s.db.QueryContext(ctx, s.q(rolloutQuery+` ORDER BY r.updated DESC, r.version`))
	if err != nil {
		return nil, s.damaged(err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, s.damaged(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.damaged(err)
	}
	return out, nil
}

// SetRollout implements Store.
func (s *DB) SetRollout(ctx context.Context, r Rollout) error {
	if err := validRollout(r); err != nil {
		return err
	}
	return s.setRollout(ctx, s.db, r)
}

// DeleteRollout implements Store.
func (s *DB) DeleteRollout(ctx context.Context, version string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM rollouts WHERE version = ?`), version); err != nil {
		return fmt.Errorf("device database %s: forget the rollout of %s: %w", s.name, version, err)
	}
	return nil
}

// Policy implements Store.
func (s *DB) Policy(ctx context.Context, id string) (Policy, error) {
	p := Policy{ID: id}
	err := s.db.QueryRowContext(ctx, s.q(`SELECT hold, channel FROM policies WHERE device_id = ?`), id).Scan(&p.Hold, &p.Channel)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, s.damaged(err)
	}
	return p, nil
}

// Policies implements Store.
func (s *DB) Policies(ctx context.Context) ([]Policy, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, hold, channel FROM policies ORDER BY device_id`)
	if err != nil {
		return nil, s.damaged(err)
	}
	defer rows.Close()
	var out []Policy
	for rows.Next() {
		var p Policy
		if err := rows.Scan(&p.ID, &p.Hold, &p.Channel); err != nil {
			return nil, s.damaged(err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.damaged(err)
	}
	return out, nil
}

// SetPolicy implements Store.
func (s *DB) SetPolicy(ctx context.Context, p Policy) error {
	if err := validPolicy(p); err != nil {
		return err
	}
	var err error
	if p.Hold == "" && p.Channel == "" {
		_, err = s.db.ExecContext(ctx, s.q(`DELETE FROM policies WHERE device_id = ?`), p.ID)
	} else {
		_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO policies (device_id, hold, channel) VALUES (?,?,?)
			ON CONFLICT(device_id) DO UPDATE SET hold=excluded.hold, channel=excluded.channel`), p.ID, p.Hold, p.Channel)
	}
	if err != nil {
		return fmt.Errorf("device database %s: save the settings of %s: %w", s.name, p.ID, err)
	}
	return nil
}
