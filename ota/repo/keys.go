package repo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Roles, one ed25519 key each.
var roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// RootExpiry is how long the trust root metadata that images pin stays valid; RootRenewal is
// how long before its expiry a new version is signed (devices follow N+1.root.json).
const (
	RootExpiry  = 10 * 365 * 24 * time.Hour
	RootRenewal = 365 * 24 * time.Hour
)

// ErrKeyPermissions: a private key file is readable by other users.
var ErrKeyPermissions = errors.New("signing key readable by others")

// Keys are the owner's signing keys and the trust root (root.json) built from them.
type Keys struct {
	Dir  string
	priv map[string]ed25519.PrivateKey
	// Root is the signed TUF root metadata: what images pin as /etc/kiln/root.json.
	Root []byte
	// Created is true when LoadOrCreateKeys generated the keys.
	Created bool
}

// DefaultKeyDir is where the owner's keys live: $KILN_KEYS if set, else
// <user config dir>/kiln/keys (~/.config/kiln/keys on Linux).
func DefaultKeyDir() (string, error) {
	if d := os.Getenv("KILN_KEYS"); d != "" {
		return d, nil
	}
	cfg, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the key directory: %w (set KILN_KEYS)", err)
	}
	return filepath.Join(cfg, "kiln", "keys"), nil
}

// OwnerKeys loads the owner's signing keys from DefaultKeyDir, generating them on first use.
func OwnerKeys() (*Keys, error) {
	dir, err := DefaultKeyDir()
	if err != nil {
		return nil, err
	}
	return LoadOrCreateKeys(dir)
}

// LoadOrCreateKeys loads the signing keys from dir, generating them (and the root metadata) on
// first use. The directory is created 0700 and every key file 0600; a key file other users can
// read is refused with ErrKeyPermissions.
func LoadOrCreateKeys(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict key directory %s: %w", dir, err)
	}
	k := &Keys{Dir: dir, priv: map[string]ed25519.PrivateKey{}}
	for _, role := range roles {
		key, err := loadOrCreateKey(filepath.Join(dir, role+".key"))
		if err != nil {
			return nil, err
		}
		k.priv[role] = key
	}
	rootPath := filepath.Join(dir, "root.json")
	data, err := os.ReadFile(rootPath)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = k.newRoot(time.Now())
		if err == nil {
			err = writeExclusive(rootPath, data, 0o644)
			k.Created = err == nil
			if errors.Is(err, fs.ErrExist) { // created concurrently: use that one
				data, err = os.ReadFile(rootPath)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("trust root %s: %w", rootPath, err)
	}
	if err := k.checkRoot(data); err != nil {
		return nil, fmt.Errorf("trust root %s: %w", rootPath, err)
	}
	k.Root = data
	if err := k.RenewRoot(time.Now()); err != nil {
		return nil, err
	}
	return k, nil
}

// RootVersion returns the version of the current trust root.
func (k *Keys) RootVersion() int64 {
	root, err := metadata.Root().FromBytes(k.Root)
	if err != nil {
		return 0
	}
	return root.Signed.Version
}

// RootFile is where version v of the trust root is kept in the key directory.
func (k *Keys) RootFile(v int64) string {
	return filepath.Join(k.Dir, fmt.Sprintf("%d.root.json", v))
}

// RenewRoot signs version N+1 of the trust root, with the same keys and a new expiry, when
// version N expires within RootRenewal. Every version stays in the key directory as
// N.root.json: publish copies them into repositories, where devices pinning an older version
// find the chain.
func (k *Keys) RenewRoot(now time.Time) error {
	root, err := metadata.Root().FromBytes(k.Root)
	if err != nil {
		return err
	}
	v := root.Signed.Version
	if _, err := os.Stat(k.RootFile(v)); errors.Is(err, fs.ErrNotExist) {
		if err := atomicWrite(k.RootFile(v), k.Root); err != nil {
			return fmt.Errorf("keep trust root version %d: %w", v, err)
		}
	}
	if root.Signed.Expires.Sub(now) > RootRenewal {
		return nil
	}
	root.Signed.Version++
	root.Signed.Expires = now.UTC().Add(RootExpiry).Truncate(time.Second)
	root.ClearSignatures()
	s, err := k.signer(metadata.ROOT)
	if err != nil {
		return err
	}
	if _, err := root.Sign(s); err != nil {
		return fmt.Errorf("renew trust root: %w", err)
	}
	data, err := root.ToBytes(true)
	if err != nil {
		return err
	}
	if err := writeExclusive(k.RootFile(v+1), data, 0o644); err != nil {
		if errors.Is(err, fs.ErrExist) { // renewed concurrently
			data, err = os.ReadFile(k.RootFile(v + 1))
		}
		if err != nil {
			return fmt.Errorf("renew trust root: %w", err)
		}
	}
	if err := atomicWrite(filepath.Join(k.Dir, "root.json"), data); err != nil {
		return fmt.Errorf("renew trust root: %w", err)
	}
	k.Root = data
	return nil
}

func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key %s: %w", path, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode key %s: %w", path, err)
		}
		err = writeExclusive(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		if err == nil {
			return priv, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("write key %s: %w", path, err)
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key %s has mode %v: %w; run chmod 600 %s", path, fi.Mode().Perm(), ErrKeyPermissions, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read key %s: not a PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("read key %s: not an ed25519 key", path)
	}
	return priv, nil
}

// writeExclusive writes data to path, failing with fs.ErrExist if path exists: a reader never
// sees a partial file, and an existing key is never replaced.
func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := atomicfile.Create(path, mode)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.CommitNew()
}

func (k *Keys) signer(role string) (signature.Signer, error) {
	return signature.LoadSigner(k.priv[role], crypto.Hash(0))
}

func (k *Keys) publicKey(role string) (*metadata.Key, error) {
	return metadata.KeyFromPublicKey(k.priv[role].Public())
}

func (k *Keys) newRoot(now time.Time) ([]byte, error) {
	root := metadata.Root(now.UTC().Add(RootExpiry).Truncate(time.Second))
	for _, role := range roles {
		key, err := k.publicKey(role)
		if err != nil {
			return nil, err
		}
		if err := root.Signed.AddKey(key, role); err != nil {
			return nil, err
		}
	}
	s, err := k.signer(metadata.ROOT)
	if err != nil {
		return nil, err
	}
	if _, err := root.Sign(s); err != nil {
		return nil, err
	}
	return root.ToBytes(true)
}

// checkRoot verifies that root metadata is signed by the root key and names these keys.
func (k *Keys) checkRoot(data []byte) error {
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		return err
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("not signed by the root key: %w", err)
	}
	for _, role := range roles {
		key, err := k.publicKey(role)
		if err != nil {
			return err
		}
		id, _ := key.ID()
		if r := root.Signed.Roles[role]; r == nil || !slices.Contains(r.KeyIDs, id) {
			return fmt.Errorf("role %s does not list the key in %s.key", role, role)
		}
	}
	return nil
}

// Fingerprint returns the fingerprint of a trust root: the key IDs of its root role, joined
// by ",", shortened to 16 hex digits each. Servers advertise it and devices compare it with the
// root they pin.
func Fingerprint(rootJSON []byte) (string, error) {
	root, err := metadata.Root().FromBytes(rootJSON)
	if err != nil {
		return "", fmt.Errorf("fingerprint trust root: %w", err)
	}
	r := root.Signed.Roles[metadata.ROOT]
	if r == nil || len(r.KeyIDs) == 0 {
		return "", fmt.Errorf("fingerprint trust root: no root keys")
	}
	ids := make([]string, len(r.KeyIDs))
	for i, id := range r.KeyIDs {
		ids[i] = id[:min(16, len(id))]
	}
	return strings.Join(ids, ","), nil
}
