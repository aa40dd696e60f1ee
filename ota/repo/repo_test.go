package repo_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

func TestKeysCreatedPrivateAndReloaded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg", "kiln", "keys")
	k1, err := repo.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", fi.Mode().Perm())
	}
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		fi, err := os.Stat(filepath.Join(dir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.key mode %v, want 0600", role, fi.Mode().Perm())
		}
	}
	k2, err := repo.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.Root, k2.Root) {
		t.Fatal("second load produced a different trust root")
	}
	root, err := metadata.Root().FromBytes(k1.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		t.Fatalf("root not self-signed: %v", err)
	}
	if root.Signed.Expires.Before(time.Now().Add(5 * 365 * 24 * time.Hour)) {
		t.Errorf("root expires %v: too soon for images in the field", root.Signed.Expires)
	}
	os.Chmod(filepath.Join(dir, "targets.key"), 0o644)
	if _, err := repo.LoadOrCreateKeys(dir); !errors.Is(err, repo.ErrKeyPermissions) {
		t.Fatalf("world-readable key: err = %v, want ErrKeyPermissions", err)
	}
}

func TestPublish(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	p1 := otatest.Payload(3<<20, 1)
	pub := otatest.Publish(t, dir, keys, "1.0.0", p1, repo.Options{})
	if pub.Unchanged || len(pub.Deltas) != 0 {
		t.Fatalf("first publish: %+v", pub)
	}
	// The payload is stored under its hash, byte for byte.
	got, err := os.ReadFile(filepath.Join(dir, ota.TargetFile(pub.Target.Path, pub.Target.SHA256)))
	if err != nil || !bytes.Equal(got, p1) {
		t.Fatalf("stored payload differs: %v", err)
	}
	// Republishing the same bundle changes nothing.
	if again := otatest.Publish(t, dir, keys, "1.0.0", p1, repo.Options{}); !again.Unchanged {
		t.Fatal("republishing the same payload changed the repository")
	}
	// The same version with other bytes is refused.
	_, err = repo.Publish(context.Background(), dir, keys, otatest.Bundle(t, "1.0.0", otatest.Payload(100, 2), nil), repo.Options{})
	if !errors.Is(err, repo.ErrExists) {
		t.Fatalf("same version, other content: err = %v, want ErrExists", err)
	}
	// A one-region change gets a delta much smaller than the payload.
	p2 := bytes.Clone(p1)
	copy(p2[1<<20:], "one changed file")
	pub2 := otatest.Publish(t, dir, keys, "1.1.0", p2, repo.Options{})
	if len(pub2.Deltas) != 1 || pub2.Deltas[0].Size > int64(len(p2))/20 || pub2.Deltas[0].From != "1.0.0" {
		t.Fatalf("deltas = %+v, want one small delta from 1.0.0", pub2.Deltas)
	}
	r, err := repo.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := r.List()
	if len(list) != 3 || list[0].Version != "1.1.0" {
		t.Fatalf("targets = %+v", list)
	}
	if r.Targets.Signed.Version != 2 || r.Snapshot.Signed.Version != 2 || r.Timestamp.Signed.Version != 2 {
		t.Errorf("versions targets=%d snapshot=%d timestamp=%d, want 2 each", r.Targets.Signed.Version, r.Snapshot.Signed.Version, r.Timestamp.Signed.Version)
	}
	for _, role := range []string{"timestamp", "snapshot", "targets"} {
		var err error
		switch role {
		case "timestamp":
			err = r.Root.VerifyDelegate(role, r.Timestamp)
		case "snapshot":
			err = r.Root.VerifyDelegate(role, r.Snapshot)
		case "targets":
			err = r.Root.VerifyDelegate(role, r.Targets)
		}
		if err != nil {
			t.Errorf("%s signature: %v", role, err)
		}
	}
	// Another owner's keys cannot publish here.
	_, err = repo.Publish(context.Background(), dir, otatest.Keys(t), otatest.Bundle(t, "1.2.0", p2, nil), repo.Options{})
	if !errors.Is(err, repo.ErrForeignRepository) {
		t.Fatalf("foreign keys: err = %v, want ErrForeignRepository", err)
	}
}

func TestRefreshResignsTimestamp(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("payload"), repo.Options{})
	if ok, err := repo.Refresh(dir, keys, false, repo.Options{}); err != nil || ok {
		t.Fatalf("fresh timestamp refreshed: %v %v", ok, err)
	}
	later := func() time.Time { return time.Now().Add(5 * 24 * time.Hour) }
	if ok, err := repo.Refresh(dir, keys, false, repo.Options{Now: later}); err != nil || !ok {
		t.Fatalf("old timestamp not refreshed: %v %v", ok, err)
	}
	r, _ := repo.Load(dir)
	if r.Timestamp.Signed.Version != 2 || !r.Timestamp.Signed.Expires.After(later()) {
		t.Fatalf("timestamp v%d expires %v", r.Timestamp.Signed.Version, r.Timestamp.Signed.Expires)
	}
}

// TestPublishRefusesBadVersions: only semantic versions are signed; one that could climb out
// of a directory on the device never reaches the repository.
func TestPublishRefusesBadVersions(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	for _, mod := range []func(*ota.Bundle){
		func(b *ota.Bundle) { b.Version = "2.0.0-x/../../ESCAPED" },
		func(b *ota.Bundle) { b.Version = "02.0.0" },
		func(b *ota.Bundle) { b.MinFrom = "1.0.0/.." },
		func(b *ota.Bundle) { b.MaxFrom = "1.x/.." },
	} {
		_, err := repo.Publish(context.Background(), dir, keys, otatest.Bundle(t, "2.0.0", []byte("x"), mod), repo.Options{})
		if !errors.Is(err, ota.ErrBadVersion) {
			t.Errorf("err = %v, want ErrBadVersion", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata")); err == nil {
		t.Error("a refused bundle created a repository")
	}
}

// TestPublishRoot: a package image's bundle publishes its UKI and its root as two signed
// targets, the UKI naming the root; the next version gets a root delta; republishing changes
// nothing, and the same version with another root is refused.
func TestPublishRoot(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki, root := otatest.Payload(1<<20, 1), otatest.Payload(4<<20, 2)
	pub, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, "1.0.0", uki, root), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Root == nil || pub.Root.Kind != ota.KindRoot || pub.Target.Root != pub.Root.Path ||
		pub.Target.RootSHA256 != pub.Root.SHA256 || pub.Target.RootSize != int64(len(root)) {
		t.Fatalf("published %+v with root %+v", pub.Target, pub.Root)
	}
	if got, err := os.ReadFile(filepath.Join(dir, ota.TargetFile(pub.Root.Path, pub.Root.SHA256))); err != nil || !bytes.Equal(got, root) {
		t.Fatalf("stored root differs: %v", err)
	}
	again, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, "1.0.0", uki, root), repo.Options{})
	if err != nil || !again.Unchanged {
		t.Fatalf("republishing: %+v, %v", again, err)
	}
	if _, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, "1.0.0", uki, otatest.Payload(4<<20, 3)), repo.Options{}); !errors.Is(err, repo.ErrExists) {
		t.Fatalf("same version, other root: err = %v, want ErrExists", err)
	}
	root2 := append(bytes.Clone(root), "a new package"...)
	pub2, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, "1.1.0", append(bytes.Clone(uki), '!'), root2), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rootDelta *ota.Target
	for i, d := range pub2.Deltas {
		if d.Full == pub2.Root.Path {
			rootDelta = &pub2.Deltas[i]
		}
	}
	if len(pub2.Deltas) != 2 || rootDelta == nil || rootDelta.FromSHA256 != pub.Root.SHA256 || rootDelta.Size > int64(len(root2))/20 {
		t.Fatalf("deltas = %+v, want a UKI delta and a small root delta from 1.0.0's root", pub2.Deltas)
	}
	r, _ := repo.Load(dir)
	list, _ := r.List()
	sel, err := ota.Select(list, ota.Device{Name: "tiny", Version: "1.0.0", Arch: "x86_64", Board: "pc", Channel: "stable"})
	if err != nil || sel.Root == nil || sel.Root.SHA256 != pub2.Root.SHA256 || sel.RootDelta == nil {
		t.Fatalf("a device on 1.0.0 is offered %+v, %v", sel, err)
	}
}
