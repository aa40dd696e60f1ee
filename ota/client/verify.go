// Package client is the device side of the update protocol that needs no device: it verifies a
// repository's TUF metadata against a pinned trust root with go-tuf's updater, naming the
// attack it rejected, and downloads payloads itself, streaming and resumable, while checking
// their signed length and hash.
package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

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

// Verifier runs the TUF client workflow (go-tuf's updater: root rotation, timestamp,
// snapshot, targets) against a pinned root.
type Verifier struct {
	// Root is the pinned trust root metadata (/etc/kiln/root.json).
	Root []byte
	// StateDir keeps the trusted metadata across runs: the newest root (so that a rotated or
	// renewed root is trusted from then on) and the last timestamp, snapshot and targets, for
	// rollback protection. "" keeps nothing.
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

// Update fetches and verifies root (rotations), timestamp, snapshot and targets, in that order.
func (v *Verifier) Update(ctx context.Context, fetch FetchFunc) (*Verified, error) {
	if len(v.Root) == 0 {
		return nil, ErrNoTrustRoot
	}
	root, err := v.trustedRoot()
	if err != nil {
		return nil, err
	}
	up, err := v.updater(ctx, root, fetch)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, classify(err)
	}
	return verified(up)
}

// savedRoot is the file in StateDir holding the newest trusted root.
const savedRoot = "root.json"

// trustedRoot returns the root to start from: the pinned one, or the newer root a previous
// run saved after following a rotation from it.
func (v *Verifier) trustedRoot() ([]byte, error) {
	pinned, err := metadata.Root().FromBytes(v.Root)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	if v.StateDir == "" {
		return v.Root, nil
	}
	data, err := os.ReadFile(filepath.Join(v.StateDir, savedRoot))
	if err != nil {
		return v.Root, nil
	}
	saved, err := metadata.Root().FromBytes(data)
	if err != nil || saved.VerifyDelegate(metadata.ROOT, saved) != nil || saved.Signed.Version <= pinned.Signed.Version {
		return v.Root, nil
	}
	return data, nil
}

// updater configures go-tuf's updater to fetch through fetch and keep its state in StateDir.
func (v *Verifier) updater(ctx context.Context, root []byte, fetch FetchFunc) (*updater.Updater, error) {
	cfg, err := config.New(metadataURL, root)
	if err != nil {
		return nil, err
	}
	cfg.Fetcher = fetcher{ctx: ctx, fetch: fetch}
	cfg.MaxRootRotations = maxRootRotations
	cfg.RootMaxLength = maxRootSize
	cfg.TimestampMaxLength = maxTimestampSize
	cfg.SnapshotMaxLength = maxMetaSize
	cfg.TargetsMaxLength = maxMetaSize
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = v.StateDir, v.StateDir
	cfg.DisableLocalCache = v.StateDir == ""
	up, err := updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("trust root: %w", classify(err))
	}
	if v.Now != nil {
		up.UnsafeSetRefTime(v.Now().UTC())
	}
	return up, nil
}

// verified collects the updater's trusted metadata and decodes Kiln's targets.
func verified(up *updater.Updater) (*Verified, error) {
	tm := up.GetTrustedMetadataSet()
	tg := tm.Targets[metadata.TARGETS]
	if tm.Root == nil || tm.Timestamp == nil || tm.Snapshot == nil || tg == nil {
		return nil, errors.New("verify metadata: incomplete after refresh")
	}
	targets, err := repo.TargetsOf(tg)
	if err != nil {
		return nil, err
	}
	return &Verified{Root: tm.Root, Timestamp: tm.Timestamp, Snapshot: tm.Snapshot, TargetsMD: tg, Targets: targets}, nil
}

// metadataURL is the base the updater builds metadata URLs from; fetcher strips it again.
const metadataURL = "kiln:/metadata"

// fetcher gives go-tuf's updater the metadata files through a FetchFunc.
type fetcher struct {
	ctx   context.Context
	fetch FetchFunc
}

func (f fetcher) DownloadFile(u string, max int64, _ time.Duration) ([]byte, error) {
	name, ok := strings.CutPrefix(u, metadataURL+"/")
	if !ok || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("metadata URL %q outside the repository", u)
	}
	data, err := f.fetch(f.ctx, name, max)
	if errors.Is(err, ErrNotFound) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: name}
	}
	if err == nil && int64(len(data)) > max {
		return nil, fmt.Errorf("get %s: longer than %d bytes: %w", name, max, ErrTooLong)
	}
	return data, err
}

// classify adds Kiln's named error to an error of go-tuf's checks.
func classify(err error) error {
	var (
		unsigned *metadata.ErrUnsignedMetadata
		version  *metadata.ErrBadVersionNumber
		expired  *metadata.ErrExpiredMetadata
		mismatch *metadata.ErrLengthOrHashMismatch
	)
	var named error
	switch {
	case errors.As(err, &unsigned):
		named = ErrUnknownKey
	case errors.As(err, &version):
		named = ErrRollback
	case errors.As(err, &expired):
		named = ErrExpired
	case errors.As(err, &mismatch):
		named = ErrMixAndMatch
	default:
		return fmt.Errorf("verify metadata: %w", err)
	}
	return fmt.Errorf("verify metadata: %w: %v", named, err)
}
