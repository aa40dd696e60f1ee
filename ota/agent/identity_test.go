package agent_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// TestIdentityPersistsAndIsAccepted: a real agent's signed reports and checks are accepted,
// its ID is the one derived from the key on its data partition, and after restarts (and an
// update of the agent itself) it is still the same device to the server.
func TestIdentityPersistsAndIsAccepted(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki := otatest.Payload(64<<10, 1)
	otatest.Publish(t, dir, keys, "1.0.0", uki, repo.Options{})
	srv := startServer(t, dir)

	d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
		root: keys.Root, server: srv.URL(), uki: map[string][]byte{"1.0.0": uki}}
	os.MkdirAll(d.linux(), 0o755)
	os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), uki, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := d.agent("1.0.0").Assess(ctx); err != nil { // first boot: reports healthy
		t.Fatal(err)
	}
	for restart := range 3 {
		if err := d.agent("1.0.0").CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
			t.Fatalf("check after restart %d: %v, want ErrNoUpdate", restart, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(d.data, "kiln", "device.key"))
	if err != nil {
		t.Fatalf("device key not kept on the data partition: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("device key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id := ota.DeviceID("tiny", k.(ed25519.PrivateKey).Public().(ed25519.PublicKey))
	rows := srv.Devices()
	if len(rows) != 1 || rows[0].ID != id || rows[0].State != ota.StateHealthy {
		t.Fatalf("device table %+v, want one healthy row for %s", rows, id)
	}

	// A damaged key file gives the device a new identity instead of stopping the agent.
	os.WriteFile(filepath.Join(d.data, "kiln", "device.key"), []byte("garbage"), 0o600)
	if err := d.agent("1.0.0").CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
		t.Fatalf("check with a new identity: %v", err)
	}
	if rows := srv.Devices(); len(rows) != 2 {
		t.Fatalf("after replacing a damaged key: %d rows, want the old and the new identity", len(rows))
	}
}
