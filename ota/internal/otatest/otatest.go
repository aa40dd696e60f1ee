// Package otatest builds update bundles and repositories for the ota packages' tests.
package otatest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/repo"
)

// Bundle writes a build output directory (OUT/update/) holding payload as version of "tiny"
// and returns OUT.
func Bundle(t testing.TB, version string, payload []byte, mod func(*ota.Bundle)) string {
	t.Helper()
	out := t.TempDir()
	dir := filepath.Join(out, "update")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	b := ota.Bundle{Name: "tiny", Version: version, Arch: "x86_64", Board: "pc", Channel: "stable",
		MinFrom: "0.0.0", Payload: ota.Payload{File: "tiny-" + version + ".efi", Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}}
	if mod != nil {
		mod(&b)
	}
	if err := os.WriteFile(filepath.Join(dir, b.Payload.File), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	data, _ := json.MarshalIndent(b, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "update.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// Keys returns fresh signing keys in a temporary directory.
func Keys(t testing.TB) *repo.Keys {
	t.Helper()
	k, err := repo.LoadOrCreateKeys(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Publish publishes payload as version into the repository dir.
func Publish(t testing.TB, dir string, keys *repo.Keys, version string, payload []byte, opts repo.Options) *repo.Published {
	t.Helper()
	p, err := repo.Publish(context.Background(), dir, keys, Bundle(t, version, payload, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Payload returns n deterministic pseudo-random bytes seeded by seed.
func Payload(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// RootBundle is Bundle for a package image: the UKI payload and its root filesystem image.
func RootBundle(t testing.TB, version string, uki, root []byte) string {
	t.Helper()
	sum := sha256.Sum256(root)
	file := "tiny-" + version + ".root"
	out := Bundle(t, version, uki, func(b *ota.Bundle) {
		b.Root = &ota.Payload{File: file, Size: int64(len(root)), SHA256: hex.EncodeToString(sum[:])}
	})
	if err := os.WriteFile(filepath.Join(out, "update", file), root, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
