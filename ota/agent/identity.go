package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The device's identity is an ed25519 key made on first boot and kept on the data partition
// (next to the OTA state, so it survives updates and rollbacks). The server pins it on first
// contact; the device ID is derived from it (ota.DeviceID).

// keyFile is where the identity key lives: <State>/../device.key (/data/kiln/device.key).
func (a *Agent) keyFile() string { return filepath.Join(filepath.Dir(a.cfg.State), "device.key") }

// loadIdentity returns the key in path, making and saving one when there is none. A key that
// cannot be saved is still returned, with the error: the device then gets a new identity at
// its next start.
func loadIdentity(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		key, perr := parseIdentity(data)
		if perr == nil {
			return key, nil
		}
		return nil, fmt.Errorf("device key %s: %w (delete it to make a new identity; the server then sees a new device)", path, perr)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read device key %s: %w", path, err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make device key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("make device key: %w", err)
	}
	if err := saveIdentity(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return key, fmt.Errorf("save device key %s: %w (the device gets a new identity at its next start)", path, err)
	}
	return key, nil
}

func parseIdentity(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 key", k)
	}
	return key, nil
}

// saveIdentity writes the key next to its final name, syncs it and renames it into place, so
// that a power cut leaves either no key or the whole key.
func saveIdentity(path string, pemData []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	// 0600 where the file system keeps modes; on the FAT data partition the mount's umask rules.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(pemData)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}
