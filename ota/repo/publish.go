package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/delta"
)

// MaxDeltaBases is how many earlier versions get a delta to a newly published one.
const MaxDeltaBases = 3

// Options tune Publish and Refresh.
type Options struct {
	// Now is the clock (default time.Now); expiry dates count from it.
	Now func() time.Time
	// NoDeltas skips making delta payloads.
	NoDeltas bool
	Log      *logrus.Logger
	Progress progress.Func
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

func (o *Options) log() *logrus.Logger {
	if o.Log != nil {
		return o.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// Published is what Publish added.
type Published struct {
	Target ota.Target
	// Root is the root filesystem target of a package image (nil for other images).
	Root   *ota.Target
	Deltas []ota.Target
	// Unchanged is true when the same payload was already published.
	Unchanged bool
	// TargetsVersion is the version of the targets metadata now current.
	TargetsVersion int64
}

// ReadBundle reads update.json from dir, or from dir/update when dir is a build's output
// directory.
func ReadBundle(dir string) (*ota.Bundle, string, error) {
	p := filepath.Join(dir, ota.BundleFile)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		dir = filepath.Join(dir, "update")
		p = filepath.Join(dir, ota.BundleFile)
	}
	b, err := ota.LoadBundle(dir)
	if err != nil {
		return nil, "", fmt.Errorf("%w (give a build's output directory, which holds update/update.json)", err)
	}
	if b.Name == "" || b.Payload.File == "" {
		return nil, "", fmt.Errorf("read update bundle %s: name and payload.file are required", p)
	}
	if err := ota.CheckVersion(b.Version); err != nil {
		return nil, "", fmt.Errorf("read update bundle %s: version: %w (rebuild with a recipe version such as 1.2.0)", p, err)
	}
	if _, err := ota.InRange(b.Version, b.MinFrom, b.MaxFrom, b.Version); err != nil {
		return nil, "", fmt.Errorf("read update bundle %s: %w", p, err)
	}
	files := map[string]string{"payload.file": b.Payload.File}
	if b.Root != nil {
		files["root.file"] = b.Root.File
		if b.Root.File == b.Payload.File {
			return nil, "", fmt.Errorf("read update bundle %s: root.file and payload.file name the same file", p)
		}
	}
	for field, f := range files {
		if f == "" || f != filepath.Base(f) || strings.ContainsAny(f, `/\`) || f == ".." || f == "." {
			return nil, "", fmt.Errorf("read update bundle %s: %s %q must be a plain file name", p, field, f)
		}
	}
	return b, dir, nil
}

// Publish adds the update bundle in bundleDir to the repository in dir (created on first use),
// signing new targets, snapshot and timestamp metadata with keys. Publishing the same payload
// again changes nothing; the same version with other content fails with ErrExists.
func Publish(ctx context.Context, dir string, keys *Keys, bundleDir string, opts Options) (*Published, error) {
	b, bdir, err := ReadBundle(bundleDir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Published, error) {
		return nil, fmt.Errorf("publish %s %s to %s: %w", b.Name, b.Version, dir, err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	r, err := openOrInit(dir, keys, &opts)
	if err != nil {
		return fail(err)
	}
	existing, err := r.List()
	if err != nil {
		return fail(err)
	}

	t := ota.Target{
		Kind: ota.KindFull, Name: b.Name, Version: b.Version, Arch: b.Arch, Board: b.Board, Channel: b.Channel,
		MinFrom: b.MinFrom, MaxFrom: b.MaxFrom, HealthCheck: b.HealthCheck,
	}
	news := []*ota.Target{&t}
	var root ota.Target
	if b.Root != nil {
		root = t
		root.Kind, root.HealthCheck = ota.KindRoot, ""
		news = append(news, &root)
	}
	pays := []ota.Payload{b.Payload}
	if b.Root != nil {
		pays = append(pays, *b.Root)
	}
	for i, p := range pays {
		src := filepath.Join(bdir, p.File)
		sum, size, err := hashFile(ctx, src, opts.Progress)
		if err != nil {
			return fail(err)
		}
		if p.SHA256 != "" && !strings.EqualFold(sum, p.SHA256) || p.Size != 0 && size != p.Size {
			return fail(fmt.Errorf("payload %s does not match update.json (sha256 %s size %d, expected %s size %d): rebuild the image", src, sum, size, p.SHA256, p.Size))
		}
		news[i].Path, news[i].Size, news[i].SHA256 = p.File, size, sum
	}
	if b.Root != nil {
		t.Root, t.RootSize, t.RootSHA256 = root.Path, root.Size, root.SHA256
	}
	unchanged := 0
	for _, n := range news {
		for _, e := range existing {
			if e.Path != n.Path {
				continue
			}
			if e.SHA256 != n.SHA256 {
				return fail(fmt.Errorf("%w: %s (bump the version in the recipe and rebuild)", ErrExists, n.Path))
			}
			unchanged++
		}
	}
	if unchanged == len(news) {
		for _, e := range existing {
			if e.Path == t.Path {
				return &Published{Target: e, Unchanged: true, TargetsVersion: r.Targets.Signed.Version}, nil
			}
		}
	}
	pub := &Published{Target: t}
	var add []ota.Target
	for i, n := range news {
		if err := copyInto(ctx, filepath.Join(dir, ota.TargetFile(n.Path, n.SHA256)), filepath.Join(bdir, pays[i].File)); err != nil {
			return fail(err)
		}
		add = append(add, *n)
	}
	if b.Root != nil {
		pub.Root = &root
	}
	if !opts.NoDeltas {
		for _, n := range news {
			for _, base := range deltaBases(existing, *n) {
				d, err := makeDelta(ctx, dir, base, *n)
				if err != nil {
					opts.log().WithError(err).WithField("from", base.Version).Warn("no delta")
					continue
				}
				if d != nil {
					pub.Deltas = append(pub.Deltas, *d)
					add = append(add, *d)
				}
			}
		}
	}
	if err := r.commit(keys, add, &opts); err != nil {
		return fail(err)
	}
	pub.TargetsVersion = r.Targets.Signed.Version
	opts.log().WithFields(logrus.Fields{"name": t.Name, "version": t.Version, "deltas": len(pub.Deltas)}).Info("published")
	return pub, nil
}

// deltaBases picks the earlier versions of t's line (UKIs for a UKI, roots for a root) to make
// deltas from, newest first.
func deltaBases(existing []ota.Target, t ota.Target) []ota.Target {
	var out []ota.Target
	for _, e := range existing { // newest first
		if e.Kind != t.Kind || e.Name != t.Name || e.Arch != t.Arch || e.Board != t.Board || e.Size > delta.MaxBase {
			continue
		}
		if c, err := ota.CompareVersions(e.Version, t.Version); err != nil || c >= 0 {
			continue
		}
		if ok, err := ota.InRange(e.Version, t.MinFrom, t.MaxFrom, t.Version); err != nil || !ok {
			continue
		}
		out = append(out, e)
		if len(out) == MaxDeltaBases {
			break
		}
	}
	return out
}

// makeDelta writes a patch from base to t into the repository and returns its target, or nil
// when the patch is not smaller than t itself.
func makeDelta(ctx context.Context, dir string, base, t ota.Target) (*ota.Target, error) {
	old, err := os.ReadFile(filepath.Join(dir, ota.TargetFile(base.Path, base.SHA256)))
	if err != nil {
		return nil, err
	}
	newer, err := os.Open(filepath.Join(dir, ota.TargetFile(t.Path, t.SHA256)))
	if err != nil {
		return nil, err
	}
	defer newer.Close()
	tmp, err := atomicfile.Create(filepath.Join(dir, "targets", "delta"), 0o644)
	if err != nil {
		return nil, err
	}
	defer tmp.Abort()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	if err := delta.Create(ctx, cw, old, newer, t.Size); err != nil {
		return nil, err
	}
	if cw.n >= t.Size {
		return nil, nil
	}
	suffix := ".patch"
	if t.Kind == ota.KindRoot {
		suffix = ".root.patch"
	}
	d := ota.Target{
		Path: fmt.Sprintf("%s-%s-to-%s%s", t.Name, base.Version, t.Version, suffix),
		Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil)), Kind: ota.KindDelta,
		Name: t.Name, Version: t.Version, Arch: t.Arch, Board: t.Board, Channel: t.Channel,
		MinFrom: base.Version, MaxFrom: base.Version,
		From: base.Version, FromSHA256: base.SHA256, Full: t.Path, FullSize: t.Size, FullSHA256: t.SHA256,
	}
	if err := tmp.CommitAs(filepath.Base(ota.TargetFile(d.Path, d.SHA256))); err != nil {
		return nil, err
	}
	return &d, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// openOrInit loads the repository in dir, or creates an empty one trusting keys' root.
func openOrInit(dir string, keys *Keys, opts *Options) (*Repository, error) {
	r, err := Load(dir)
	if err == nil {
		if err := keys.owns(r); err != nil {
			return nil, err
		}
		return r, r.syncRoots(keys)
	}
	if !errors.Is(err, ErrNotRepository) {
		return nil, err
	}
	for _, d := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	root, err := metadata.Root().FromBytes(keys.Root)
	if err != nil {
		return nil, err
	}
	now := opts.now()
	r = &Repository{Dir: dir, Root: root, RootJSON: keys.Root,
		Targets:   metadata.Targets(now.Add(TargetsExpiry)),
		Snapshot:  metadata.Snapshot(now.Add(SnapshotExpiry)),
		Timestamp: metadata.Timestamp(now.Add(TimestampExpiry)),
	}
	// Version 0 so that the first commit writes version 1 of each.
	r.Targets.Signed.Version, r.Snapshot.Signed.Version, r.Timestamp.Signed.Version = 0, 0, 0
	// Every root version, so that devices pinning any of them find the chain to the current one.
	for v := int64(1); v < root.Signed.Version; v++ {
		if data, err := os.ReadFile(keys.RootFile(v)); err == nil {
			if err := atomicWrite(metaPath(dir, fmt.Sprintf("%d.root.json", v)), data); err != nil {
				return nil, err
			}
		}
	}
	if err := atomicWrite(metaPath(dir, fmt.Sprintf("%d.root.json", root.Signed.Version)), keys.Root); err != nil {
		return nil, err
	}
	if err := atomicWrite(metaPath(dir, "root.json"), keys.Root); err != nil {
		return nil, err
	}
	return r, nil
}

// syncRoots copies trust root versions newer than the repository's from the key directory, so
// devices pinning an older root can follow the chain.
func (r *Repository) syncRoots(keys *Keys) error {
	have, want := r.Root.Signed.Version, keys.RootVersion()
	for v := have + 1; v <= want; v++ {
		data, err := os.ReadFile(keys.RootFile(v))
		if err != nil {
			return fmt.Errorf("trust root version %d: %w", v, err)
		}
		if err := atomicWrite(metaPath(r.Dir, fmt.Sprintf("%d.root.json", v)), data); err != nil {
			return err
		}
	}
	if want > have {
		if err := atomicWrite(metaPath(r.Dir, "root.json"), keys.Root); err != nil {
			return err
		}
		r.RootJSON = keys.Root
		root, err := metadata.Root().FromBytes(keys.Root)
		if err != nil {
			return err
		}
		r.Root = root
	}
	return nil
}

// owns checks that the repository's root is the keys' root.
func (k *Keys) owns(r *Repository) error {
	if bytes.Equal(r.RootJSON, k.Root) {
		return nil
	}
	mine, _ := Fingerprint(k.Root)
	theirs, _ := Fingerprint(r.RootJSON)
	if mine != theirs {
		return fmt.Errorf("%w: its root key is %s, yours (%s) is %s; publish to a new directory or use that repository's keys (KILN_KEYS)", ErrForeignRepository, theirs, k.Dir, mine)
	}
	return nil
}

// commit adds targets and writes new targets, snapshot and timestamp metadata. The timestamp
// is written last: until then devices keep seeing the previous consistent state.
func (r *Repository) commit(keys *Keys, add []ota.Target, opts *Options) error {
	now := opts.now()
	for _, t := range add {
		raw, err := json.Marshal(customFields{Kiln: t})
		if err != nil {
			return err
		}
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil {
			return err
		}
		msg := json.RawMessage(raw)
		r.Targets.Signed.Targets[t.Path] = &metadata.TargetFiles{
			Length: t.Size, Hashes: metadata.Hashes{"sha256": sum}, Custom: &msg, Path: t.Path,
		}
	}
	r.Targets.Signed.Version++
	r.Targets.Signed.Expires = now.Add(TargetsExpiry).Truncate(time.Second)
	targetsJSON, err := signAndEncode(r.Targets, keys, metadata.TARGETS)
	if err != nil {
		return err
	}
	if err := atomicWrite(metaPath(r.Dir, fmt.Sprintf("%d.targets.json", r.Targets.Signed.Version)), targetsJSON); err != nil {
		return err
	}
	r.Snapshot.Signed.Version++
	r.Snapshot.Signed.Expires = now.Add(SnapshotExpiry).Truncate(time.Second)
	r.Snapshot.Signed.Meta["targets.json"] = metaFile(r.Targets.Signed.Version, targetsJSON)
	snapJSON, err := signAndEncode(r.Snapshot, keys, metadata.SNAPSHOT)
	if err != nil {
		return err
	}
	if err := atomicWrite(metaPath(r.Dir, fmt.Sprintf("%d.snapshot.json", r.Snapshot.Signed.Version)), snapJSON); err != nil {
		return err
	}
	r.Timestamp.Signed.Meta["snapshot.json"] = metaFile(r.Snapshot.Signed.Version, snapJSON)
	return r.writeTimestamp(keys, now)
}

func (r *Repository) writeTimestamp(keys *Keys, now time.Time) error {
	r.Timestamp.Signed.Version++
	r.Timestamp.Signed.Expires = now.Add(TimestampExpiry).Truncate(time.Second)
	tsJSON, err := signAndEncode(r.Timestamp, keys, metadata.TIMESTAMP)
	if err != nil {
		return err
	}
	return atomicWrite(metaPath(r.Dir, "timestamp.json"), tsJSON)
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

func signAndEncode[T metadata.Roles](md *metadata.Metadata[T], keys *Keys, role string) ([]byte, error) {
	md.ClearSignatures()
	s, err := keys.signer(role)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", role, err)
	}
	if _, err := md.Sign(s); err != nil {
		return nil, fmt.Errorf("sign %s: %w", role, err)
	}
	return md.ToBytes(true)
}

// Refresh re-signs the timestamp when less than half of its lifetime is left (or force is
// set), so that devices keep accepting a repository nobody has published to lately. It reports
// whether it wrote a new timestamp.
func Refresh(dir string, keys *Keys, force bool, opts Options) (bool, error) {
	unlock, err := lock(dir)
	if err != nil {
		return false, fmt.Errorf("refresh %s: %w", dir, err)
	}
	defer unlock()
	r, err := Load(dir)
	if err != nil {
		return false, fmt.Errorf("refresh: %w", err)
	}
	if err := keys.owns(r); err != nil {
		return false, fmt.Errorf("refresh %s: %w", dir, err)
	}
	if err := r.syncRoots(keys); err != nil {
		return false, fmt.Errorf("refresh %s: %w", dir, err)
	}
	now := opts.now()
	if !force && r.Timestamp.Signed.Expires.Sub(now) > TimestampExpiry/2 {
		return false, nil
	}
	if err := r.writeTimestamp(keys, now); err != nil {
		return false, fmt.Errorf("refresh %s: %w", dir, err)
	}
	return true, nil
}
