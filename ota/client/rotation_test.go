package client_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

func newSigner(t *testing.T) (signature.Signer, *metadata.Key) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

// TestRootRotation: the owner rotates the root and timestamp keys (root 2, signed by the old
// and the new root key). A device pinning root 1 follows the rotation, saves root 2, and trusts
// it from then on: also when the repository no longer serves 2.root.json, and no longer the
// retired timestamp key.
func TestRootRotation(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("one"), repo.Options{})
	oldTS := read(t, dir, "timestamp.json")

	root, err := metadata.Root().FromBytes(keys.Root)
	if err != nil {
		t.Fatal(err)
	}
	rootSigner, rootKey := newSigner(t)
	tsSigner, tsKey := newSigner(t)
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP} {
		for _, id := range root.Signed.Roles[role].KeyIDs {
			if err := root.Signed.RevokeKey(id, role); err != nil {
				t.Fatal(err)
			}
		}
	}
	root.Signed.AddKey(rootKey, metadata.ROOT)
	root.Signed.AddKey(tsKey, metadata.TIMESTAMP)
	root.Signed.Version = 2
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "metadata", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("2.root.json", otatest.Sign(t, root, otatest.Signer(t, keys, metadata.ROOT), rootSigner))
	ts, err := metadata.Timestamp().FromBytes(oldTS)
	if err != nil {
		t.Fatal(err)
	}
	ts.Signed.Version++
	write("timestamp.json", otatest.Sign(t, ts, tsSigner))

	state := t.TempDir()
	ctx := context.Background()
	got, err := (&client.Verifier{Root: keys.Root, StateDir: state}).Update(ctx, dirFetch(dir, nil))
	if err != nil {
		t.Fatalf("device pinning root 1: %v", err)
	}
	if got.Root.Signed.Version != 2 {
		t.Fatalf("verified with root %d, want 2", got.Root.Signed.Version)
	}

	// The repository stops serving 2.root.json: the device that saw it still verifies, a
	// device that did not cannot check the new timestamp key.
	os.Remove(filepath.Join(dir, "metadata", "2.root.json"))
	if _, err := (&client.Verifier{Root: keys.Root, StateDir: state}).Update(ctx, dirFetch(dir, nil)); err != nil {
		t.Fatalf("device with the saved root 2: %v", err)
	}
	if _, err := (&client.Verifier{Root: keys.Root, StateDir: t.TempDir()}).Update(ctx, dirFetch(dir, nil)); !errors.Is(err, client.ErrUnknownKey) {
		t.Fatalf("device without root 2: %v, want ErrUnknownKey", err)
	}
	// A timestamp signed with the retired key is refused by the rotated device.
	ts.Signed.Version += 5
	ts.Signed.Expires = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	forged := otatest.Sign(t, ts, otatest.Signer(t, keys, metadata.TIMESTAMP))
	_, err = (&client.Verifier{Root: keys.Root, StateDir: state}).Update(ctx, dirFetch(dir, map[string][]byte{"timestamp.json": forged}))
	if !errors.Is(err, client.ErrUnknownKey) {
		t.Fatalf("timestamp signed by the retired key: %v, want ErrUnknownKey", err)
	}
}
