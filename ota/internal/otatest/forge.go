package otatest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/repo"
)

// Signer returns the signer of role from the key directory of keys.
func Signer(t testing.TB, keys *repo.Keys, role string) signature.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keys.Dir, role+".key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s.key: not PEM", role)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(key.(ed25519.PrivateKey), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Resign lets mod change the Kiln fields of every target of the repository in dir, then signs
// new targets, snapshot and timestamp metadata with keys: what an owner's compromised or buggy
// tooling could publish, bypassing Publish's checks.
func Resign(t testing.TB, dir string, keys *repo.Keys, mod func(*ota.Target)) {
	t.Helper()
	r, err := repo.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, tf := range r.Targets.Signed.Targets {
		var c struct {
			Kiln ota.Target `json:"kiln"`
		}
		if err := json.Unmarshal(*tf.Custom, &c); err != nil {
			t.Fatal(err)
		}
		mod(&c.Kiln)
		raw, _ := json.Marshal(c)
		msg := json.RawMessage(raw)
		r.Targets.Signed.Targets[path].Custom = &msg
	}
	r.Targets.Signed.Version++
	tg := Sign(t, r.Targets, Signer(t, keys, metadata.TARGETS))
	write(t, dir, fmt.Sprintf("%d.targets.json", r.Targets.Signed.Version), tg)
	r.Snapshot.Signed.Version++
	r.Snapshot.Signed.Meta["targets.json"] = metaFile(r.Targets.Signed.Version, tg)
	snap := Sign(t, r.Snapshot, Signer(t, keys, metadata.SNAPSHOT))
	write(t, dir, fmt.Sprintf("%d.snapshot.json", r.Snapshot.Signed.Version), snap)
	r.Timestamp.Signed.Version++
	r.Timestamp.Signed.Expires = time.Now().Add(repo.TimestampExpiry).Truncate(time.Second)
	r.Timestamp.Signed.Meta["snapshot.json"] = metaFile(r.Snapshot.Signed.Version, snap)
	write(t, dir, "timestamp.json", Sign(t, r.Timestamp, Signer(t, keys, metadata.TIMESTAMP)))
}

// Sign signs md with signers alone (its old signatures dropped) and returns its JSON.
func Sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], signers ...signature.Signer) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "metadata", name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	f := metadata.MetaFile(version)
	f.Length = int64(len(data))
	sum := sha256.Sum256(data)
	f.Hashes = metadata.Hashes{"sha256": sum[:]}
	return f
}
