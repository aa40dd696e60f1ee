// Package client is the device side of the update protocol that needs no device: it verifies a
// repository's TUF metadata against a pinned trust root, with a named error for each attack, and
// downloads payloads with resume while checking their signed length and hash.
package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/repo"
)

// Errors for rejected metadata and payloads. Each wraps the detail of what was seen.
var (
	// ErrRollback: metadata older than what the device has already trusted.
	ErrRollback = errors.New("rollback attack: metadata older than already trusted")
	// ErrExpired: metadata past its expiry date (a frozen or replayed repository).
	ErrExpired = errors.New("metadata expired")
	// ErrMixAndMatch: metadata files that do not belong to the same snapshot.
	ErrMixAndMatch = errors.New("mix-and-match: metadata does not match its snapshot")
	// ErrUnknownKey: metadata not signed by enough keys the trust root names.
	ErrUnknownKey = errors.New("metadata not signed by a trusted key")
	// ErrHashMismatch: a payload whose sha256 differs from the signed one.
	ErrHashMismatch = errors.New("payload hash mismatch")
	// ErrTooLong: a payload longer than its signed length (endless data attack).
	ErrTooLong = errors.New("payload longer than signed")
	// ErrNotFound: the server has no such file.
	ErrNotFound = errors.New("not found")
	// ErrNoTrustRoot: the device has no pinned root, so it accepts no updates.
	ErrNoTrustRoot = errors.New("no trust root")
)

// Size limits for metadata downloads whose length is not signed.
const (
	maxRootSize      = 512 << 10
	maxTimestampSize = 64 << 10
	maxMetaSize      = 16 << 20
	maxRootRotations = 32
)

// FetchFunc returns the metadata file name (e.g. "timestamp.json", "3.snapshot.json"),
// reading at most max bytes; a missing file is ErrNotFound.
type FetchFunc func(ctx context.Context, name string, max int64) ([]byte, error)

// Verifier runs the TUF client workflow against a pinned root.
type Verifier struct {
	// Root is the pinned trust root metadata (/etc/kiln/root.json).
	Root []byte
	// StateDir keeps the last trusted timestamp and snapshot across runs, for rollback
	// protection; "" keeps nothing.
	StateDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verified is a consistent, verified view of the repository.
type Verified struct {
	Root      *metadata.Metadata[metadata.RootType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	TargetsMD *metadata.Metadata[metadata.TargetsType]
	Targets   []ota.Target
}

// Lookup returns the verified target with the given path.
func (v *Verified) Lookup(path string) (ota.Target, bool) {
	for _, t := range v.Targets {
		if t.Path == path {
			return t, true
		}
	}
	return ota.Target{}, false
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now().UTC()
	}
	return time.Now().UTC()
}

// signedBy maps a signature verification failure to ErrUnknownKey.
func signedBy[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T]) error {
	if err := root.VerifyDelegate(role, md); err != nil {
		return fmt.Errorf("%s: %w (%v)", role, ErrUnknownKey, err)
	}
	return nil
}

// Update fetches and verifies root (rotations), timestamp, snapshot and targets, in that order.
func (v *Verifier) Update(ctx context.Context, fetch FetchFunc) (*Verified, error) {
	if len(v.Root) == 0 {
		return nil, ErrNoTrustRoot
	}
	now := v.now()
	root, err := metadata.Root().FromBytes(v.Root)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	if err := signedBy(root, metadata.ROOT, root); err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	// Root rotation: N+1.root.json must be signed by the old and the new root keys.
	for i := 0; i < maxRootRotations; i++ {
		next := root.Signed.Version + 1
		data, err := fetch(ctx, fmt.Sprintf("%d.root.json", next), maxRootSize)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fetch root %d: %w", next, err)
		}
		nr, err := metadata.Root().FromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", next, err)
		}
		if err := signedBy(root, metadata.ROOT, nr); err != nil {
			return nil, fmt.Errorf("root %d: %w", next, err)
		}
		if err := signedBy(nr, metadata.ROOT, nr); err != nil {
			return nil, fmt.Errorf("root %d: %w", next, err)
		}
		if nr.Signed.Version != next {
			return nil, fmt.Errorf("root: %w: file %d.root.json holds version %d", ErrRollback, next, nr.Signed.Version)
		}
		root = nr
	}
	if root.Signed.IsExpired(now) {
		return nil, fmt.Errorf("root version %d: %w on %s", root.Signed.Version, ErrExpired, root.Signed.Expires.Format(time.RFC3339))
	}

	// Timestamp.
	data, err := fetch(ctx, "timestamp.json", maxTimestampSize)
	if err != nil {
		return nil, fmt.Errorf("fetch timestamp: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	if err := signedBy(root, metadata.TIMESTAMP, ts); err != nil {
		return nil, err
	}
	tsData := data
	snapMeta := ts.Signed.Meta["snapshot.json"]
	if snapMeta == nil {
		return nil, fmt.Errorf("timestamp: names no snapshot")
	}
	if old := loadTrusted(v.StateDir, "timestamp.json", metadata.Timestamp(), root, metadata.TIMESTAMP); old != nil {
		if ts.Signed.Version < old.Signed.Version {
			return nil, fmt.Errorf("timestamp: %w: version %d, device trusts %d", ErrRollback, ts.Signed.Version, old.Signed.Version)
		}
		if om := old.Signed.Meta["snapshot.json"]; om != nil && snapMeta.Version < om.Version {
			return nil, fmt.Errorf("timestamp: %w: snapshot version %d, device trusts %d", ErrRollback, snapMeta.Version, om.Version)
		}
	}
	if ts.Signed.IsExpired(now) {
		return nil, fmt.Errorf("timestamp version %d: %w on %s (the server re-signs it while `kiln serve` runs; run kiln publish --refresh for a static repository)", ts.Signed.Version, ErrExpired, ts.Signed.Expires.Format(time.RFC3339))
	}

	// Snapshot.
	data, err = fetch(ctx, fmt.Sprintf("%d.snapshot.json", snapMeta.Version), limit(snapMeta.Length))
	if err != nil {
		return nil, fmt.Errorf("fetch snapshot %d: %w", snapMeta.Version, err)
	}
	if err := snapMeta.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("snapshot %d: %w: %v", snapMeta.Version, ErrMixAndMatch, err)
	}
	snap, err := metadata.Snapshot().FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := signedBy(root, metadata.SNAPSHOT, snap); err != nil {
		return nil, err
	}
	snapData := data
	if snap.Signed.Version != snapMeta.Version {
		return nil, fmt.Errorf("snapshot: %w: version %d, timestamp names %d", ErrMixAndMatch, snap.Signed.Version, snapMeta.Version)
	}
	if old := loadTrusted(v.StateDir, "snapshot.json", metadata.Snapshot(), root, metadata.SNAPSHOT); old != nil {
		for name, om := range old.Signed.Meta {
			nm := snap.Signed.Meta[name]
			if nm == nil || nm.Version < om.Version {
				return nil, fmt.Errorf("snapshot: %w: %s older than the version %d the device trusts", ErrRollback, name, om.Version)
			}
		}
	}
	if snap.Signed.IsExpired(now) {
		return nil, fmt.Errorf("snapshot version %d: %w on %s", snap.Signed.Version, ErrExpired, snap.Signed.Expires.Format(time.RFC3339))
	}

	// Targets.
	tm := snap.Signed.Meta["targets.json"]
	if tm == nil {
		return nil, fmt.Errorf("snapshot: names no targets")
	}
	data, err = fetch(ctx, fmt.Sprintf("%d.targets.json", tm.Version), limit(tm.Length))
	if err != nil {
		return nil, fmt.Errorf("fetch targets %d: %w", tm.Version, err)
	}
	if err := tm.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("targets %d: %w: %v", tm.Version, ErrMixAndMatch, err)
	}
	tg, err := metadata.Targets().FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	if err := signedBy(root, metadata.TARGETS, tg); err != nil {
		return nil, err
	}
	if tg.Signed.Version != tm.Version {
		return nil, fmt.Errorf("targets: %w: version %d, snapshot names %d", ErrMixAndMatch, tg.Signed.Version, tm.Version)
	}
	if tg.Signed.IsExpired(now) {
		return nil, fmt.Errorf("targets version %d: %w on %s", tg.Signed.Version, ErrExpired, tg.Signed.Expires.Format(time.RFC3339))
	}
	targets, err := repo.TargetsOf(tg)
	if err != nil {
		return nil, err
	}
	if v.StateDir != "" {
		if err := saveTrusted(v.StateDir, "timestamp.json", tsData); err != nil {
			return nil, err
		}
		if err := saveTrusted(v.StateDir, "snapshot.json", snapData); err != nil {
			return nil, err
		}
	}
	return &Verified{Root: root, Timestamp: ts, Snapshot: snap, TargetsMD: tg, Targets: targets}, nil
}

func limit(signed int64) int64 {
	if signed > 0 {
		return signed
	}
	return maxMetaSize
}

// loadTrusted reads previously trusted metadata; anything unreadable or no longer signed by
// the current root (keys rotated) counts as absent.
func loadTrusted[T metadata.Roles](dir, name string, md *metadata.Metadata[T], root *metadata.Metadata[metadata.RootType], role string) *metadata.Metadata[T] {
	if dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	old, err := md.FromBytes(data)
	if err != nil || root.VerifyDelegate(role, old) != nil {
		return nil
	}
	return old
}

func saveTrusted(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save trusted %s: %w", name, err)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("save trusted %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("save trusted %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save trusted %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save trusted %s: %w", name, err)
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
