// Package fleet stores what the update server knows about devices — each device's pinned key,
// its last known status and the history of its state changes — so that it survives restarts,
// and how far each published version is rolled out. Several servers sharing one database agree
// on the rollouts because they live only there.
// Store is the interface; Open gives the embedded SQLite implementation.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnproject/kiln/ota"
)

// Errors of a Store.
var (
	// ErrIncompatible: the database was written by a newer kiln (its schema is newer).
	ErrIncompatible = errors.New("device database from a newer kiln")
	// ErrKeyMismatch: Put of a device whose ID is pinned to another key.
	ErrKeyMismatch = errors.New("this device ID belongs to another key")
	// ErrReplay: Put of a request whose nonce was seen before.
	ErrReplay = errors.New("request already seen (replayed)")
)

// DefaultHistory is how many history events a store keeps per device by default.
const DefaultHistory = 1000

// Device is a stored device: its status and what authenticates it.
type Device struct {
	ota.DeviceStatus
	// Key is the public key pinned on the device's first contact (ota.KeyString).
	Key string `json:"key"`
	// Contacts counts its requests; Reported says whether it ever sent a report.
	Contacts int  `json:"contacts"`
	Reported bool `json:"reported"`
	// LastSigned is the signature time of its newest request: after a restart, requests
	// signed no later than this are replays.
	LastSigned time.Time `json:"last_signed"`
	// Nonce, when set, is the nonce of the request Put records: Put refuses (ErrReplay) one it
	// recorded before, in the same transaction, so that servers sharing a database refuse each
	// other's replays and a request either lands once or not at all.
	Nonce string `json:"-"`
}

// Event is one entry of a device's history: a state it reported, or what a check found
// ("up-to-date", "update-available"; Target is then the version offered).
type Event struct {
	Time    time.Time `json:"time"`
	State   string    `json:"state"`
	Version string    `json:"version"`
	Target  string    `json:"target,omitempty"`
	Message string    `json:"message,omitempty"`
	Addr    string    `json:"addr,omitempty"`
}

// Store keeps devices and their history. Implementations are safe for concurrent use.
type Store interface {
	// Devices returns every stored device, most recently seen first; Device one of them.
	Devices(ctx context.Context) ([]Device, error)
	Device(ctx context.Context, id string) (d Device, ok bool, err error)
	// Put creates or updates d and, when ev is not nil, appends ev to its history, keeping
	// the newest events only. It refuses (ErrKeyMismatch) a device whose ID has another key.
	Put(ctx context.Context, d Device, ev *Event) error
	// Delete forgets a device and its history.
	Delete(ctx context.Context, id string) error
	// History returns up to limit of a device's events (all when limit <= 0), newest first.
	History(ctx context.Context, id string, limit int) ([]Event, error)

	// Put also counts what devices made of the versions they installed: a rolled-back report
	// pauses the version's rollout when more than its MaxFailures share of the devices that
	// tried it rolled back.

	// Rollouts returns the stored rollouts, most recently changed first; Rollout one of them
	// (ErrNoRollout when there is none: the version goes to every device).
	Rollouts(ctx context.Context) ([]Rollout, error)
	Rollout(ctx context.Context, version string) (Rollout, error)
	// SetRollout creates or replaces a rollout (its counts are ignored); DeleteRollout forgets it.
	SetRollout(ctx context.Context, r Rollout) error
	DeleteRollout(ctx context.Context, version string) error
	// Policy returns the owner's settings for a device (zero Hold and Channel if none);
	// SetPolicy stores them, forgetting them when both are empty.
	Policy(ctx context.Context, id string) (Policy, error)
	Policies(ctx context.Context) ([]Policy, error)
	SetPolicy(ctx context.Context, p Policy) error
	Close() error
}

// DefaultPath is where `kiln serve` keeps its device database: $XDG_DATA_HOME/kiln/devices.db,
// else ~/.local/share/kiln/devices.db.
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "kiln", "devices.db"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the device database: %w (give --db FILE)", err)
	}
	return filepath.Join(home, ".local", "share", "kiln", "devices.db"), nil
}
