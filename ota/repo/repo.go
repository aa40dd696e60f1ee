// Package repo keeps the owner's signing keys and a static update repository: The Update
// Framework metadata (root, targets, snapshot, timestamp; signed with ed25519 keys generated on
// first use) and content-addressed payloads. Any web server or object store can serve the
// directory; `kiln serve` adds the check/report API on top.
//
// Layout:
//
//	metadata/root.json, metadata/N.root.json   the trust root (what images pin)
//	metadata/timestamp.json                    the only mutable name: the commit point
//	metadata/N.snapshot.json, N.targets.json   consistent snapshots
//	targets/<sha256>.<name>-<version>.efi      full payloads (UKIs)
//	targets/<sha256>.<name>-<from>-to-<version>.patch   deltas
package repo

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/ota"
)

// Metadata lifetimes. The timestamp is short-lived: `kiln serve` (or `kiln publish --refresh`)
// re-signs it before it runs out, so a device can tell a live repository from a frozen one.
const (
	TimestampExpiry = 7 * 24 * time.Hour
	SnapshotExpiry  = 365 * 24 * time.Hour
	TargetsExpiry   = 365 * 24 * time.Hour
)

// Sentinel errors.
var (
	// ErrNotRepository: the directory holds no repository metadata (publish creates it).
	ErrNotRepository = errors.New("not an update repository")
	// ErrForeignRepository: the repository is signed with someone else's keys.
	ErrForeignRepository = errors.New("repository belongs to other keys")
	// ErrExists: the same version is already published with other content.
	ErrExists = errors.New("version already published with different content")
)

// customFields is the "custom" object of a target: {"kiln": {...}}.
type customFields struct {
	Kiln ota.Target `json:"kiln"`
}

// Repository is the current signed state of a repository directory.
type Repository struct {
	Dir       string
	Root      *metadata.Metadata[metadata.RootType]
	RootJSON  []byte
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Targets   *metadata.Metadata[metadata.TargetsType]
}

func metaPath(dir, name string) string { return filepath.Join(dir, "metadata", name) }

// Load reads the repository's current metadata (timestamp → snapshot → targets, as a device
// would), checking that the pieces belong together. It does not check expiry.
func Load(dir string) (*Repository, error) {
	r := &Repository{Dir: dir}
	var err error
	r.RootJSON, err = os.ReadFile(metaPath(dir, "root.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load repository %s: %w (run kiln publish --repo %s OUT_DIR first)", dir, ErrNotRepository, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load repository %s: %w", dir, err)
	}
	if r.Root, err = metadata.Root().FromBytes(r.RootJSON); err != nil {
		return nil, fmt.Errorf("load repository %s: root.json: %w", dir, err)
	}
	if r.Timestamp, err = metadata.Timestamp().FromFile(metaPath(dir, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("load repository %s: timestamp.json: %w", dir, err)
	}
	snapVer := r.Timestamp.Signed.Meta["snapshot.json"].Version
	if r.Snapshot, err = metadata.Snapshot().FromFile(metaPath(dir, fmt.Sprintf("%d.snapshot.json", snapVer))); err != nil {
		return nil, fmt.Errorf("load repository %s: snapshot: %w", dir, err)
	}
	tm := r.Snapshot.Signed.Meta["targets.json"]
	if tm == nil {
		return nil, fmt.Errorf("load repository %s: snapshot names no targets", dir)
	}
	if r.Targets, err = metadata.Targets().FromFile(metaPath(dir, fmt.Sprintf("%d.targets.json", tm.Version))); err != nil {
		return nil, fmt.Errorf("load repository %s: targets: %w", dir, err)
	}
	return r, nil
}

// List returns the repository's targets, newest version first.
func (r *Repository) List() ([]ota.Target, error) {
	return TargetsOf(r.Targets)
}

// TargetsOf decodes the Kiln targets of TUF targets metadata, newest version first; targets
// without Kiln fields are skipped.
func TargetsOf(md *metadata.Metadata[metadata.TargetsType]) ([]ota.Target, error) {
	out := make([]ota.Target, 0, len(md.Signed.Targets))
	for path, tf := range md.Signed.Targets {
		if tf.Custom == nil {
			continue
		}
		var c customFields
		if err := json.Unmarshal(*tf.Custom, &c); err != nil {
			return nil, fmt.Errorf("target %s: custom fields: %w", path, err)
		}
		t := c.Kiln
		t.Path, t.Size, t.SHA256 = path, tf.Length, hex.EncodeToString(tf.Hashes["sha256"])
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		c, _ := ota.CompareVersions(out[i].Version, out[j].Version)
		if c != 0 {
			return c > 0
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}
