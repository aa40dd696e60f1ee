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

	"github.com/kilnproject/kiln/internal/atomicfile"
)

// The device's identity is an ed25519 key made on first boot and kept on the data partition
// (next to the OTA state, so it survives updates and rollbacks). The server pins it on first
// contact; the device ID is derived from it (ota.DeviceID).

// keyFile is where the identity key lives: <State>/../device.key (/data/kiln/device.key).
func (a *Agent) keyFile() string { return filepath.Join(filepath.Dir(a.cfg.State), "device.key") }

// loadIdentity returns the key in path, making and saving one when there is none or it is
// unusable. It always returns a key; the error says what went wrong (a new identity, or one for
// this run only), for the log.
func loadIdentity(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	var why error
	switch {
	case err == nil:
		key, perr := parseIdentity(data)
		if perr == nil {
			return key, nil
		}
		why = fmt.Errorf("device key %s unusable (%w): made a new one, the server sees a new device", path, perr)
	case !errors.Is(err, fs.ErrNotExist):
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		return key, fmt.Errorf("read device key %s: %w: using a key for this run only", path, err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader) // crypto/rand does not fail
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err == nil {
		err = saveIdentity(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	if err != nil {
		return key, errors.Join(why, fmt.Errorf("save device key %s: %w: the device gets a new identity at its next start", path, err))
	}
	return key, why
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

// saveIdentity writes the key so that a power cut leaves either no key or the whole key.
func saveIdentity(path string, pemData []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// 0600 where the file system keeps modes; on the FAT data partition the mount's umask rules.
	return atomicfile.Write(path, pemData, 0o600)
}
