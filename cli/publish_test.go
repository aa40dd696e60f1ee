package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
)

func otaEnv(t *testing.T) (*Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	t.Setenv("KILN_KEYS", filepath.Join(t.TempDir(), "keys"))
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // kiln serve's device database
	var stdout, stderr bytes.Buffer
	log := logrus.New()
	log.SetOutput(&stderr)
	return &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""), Log: log}, &stdout, &stderr
}

// bundle writes OUT/update/ as `kiln build` does and returns OUT.
func bundle(t *testing.T, version string, payload []byte) string {
	out := t.TempDir()
	dir := filepath.Join(out, "update")
	os.MkdirAll(dir, 0o755)
	sum := sha256.Sum256(payload)
	file := "kiln-tiny-" + version + ".efi"
	os.WriteFile(filepath.Join(dir, file), payload, 0o644)
	b, _ := json.Marshal(ota.Bundle{Name: "kiln-tiny", Version: version, Arch: "x86_64", Board: "x86_64-uefi", Channel: "stable",
		MinFrom: "0.0.0", Payload: ota.Payload{File: file, Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}})
	os.WriteFile(filepath.Join(dir, "update.json"), b, 0o644)
	return out
}

func TestPublishAndServe(t *testing.T) {
	env, stdout, stderr := otaEnv(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	payload := bytes.Repeat([]byte("kiln"), 64<<10)
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, bundle(t, "1.0.0", payload)}); code != 0 {
		t.Fatalf("kiln publish: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "published kiln-tiny 1.0.0") {
		t.Fatalf("publish output: %s", stdout)
	}
	if fi, err := os.Stat(os.Getenv("KILN_KEYS")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v %v", fi, err)
	}
	stdout.Reset()
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, bundle(t, "1.0.0", payload)}); code != 0 || !strings.Contains(stdout.String(), "already published") {
		t.Fatalf("republish: exit %d: %s %s", code, stdout, stderr)
	}
	stdout.Reset()
	if code := run(t.Context(), env, []string{"publish", "--json", "--repo", repoDir, bundle(t, "1.1.0", append(payload, "x"...))}); code != 0 {
		t.Fatalf("publish --json: exit %d: %s", code, stderr)
	}
	var out struct {
		Result struct {
			Target struct {
				Path, Version, SHA256 string
				Size                  int64
			}
			Deltas []struct{ From string }
		}
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n") // progress events, then the result
	err := json.Unmarshal([]byte(lines[len(lines)-1]), &out)
	res := out.Result
	if err != nil || res.Target.Version != "1.1.0" || res.Target.Size != int64(len(payload))+1 ||
		len(res.Target.SHA256) != 64 || len(res.Deltas) != 1 || res.Deltas[0].From != "1.0.0" {
		t.Fatalf("publish --json output %s (%v)", stdout, err)
	}
	stderr.Reset()
	if code := run(t.Context(), env, []string{"publish", "--repo", repoDir, bundle(t, "1.0.0", []byte("other"))}); code != 1 || !strings.Contains(stderr.String(), "bump the version") {
		t.Fatalf("same version, other content: exit %d: %s", code, stderr)
	}
	if code := run(t.Context(), env, []string{"serve", "--repo", repoDir}); code != 2 {
		t.Fatalf("serve without --addr: exit %d, want 2 (usage)", code)
	}

	// kiln serve on a free loopback port until cancelled.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	stdout.Reset()
	go func() { done <- run(ctx, env, []string{"serve", "--repo", repoDir, "--addr", addr, "--no-mdns"}) }()
	// A device's signed check.
	pub, key, _ := ed25519.GenerateKey(nil)
	c := &client.Client{BaseURL: "http://" + addr, Key: key}
	dev := ota.Device{ID: ota.DeviceID("kiln-tiny", pub), Key: ota.KeyString(pub), Name: "kiln-tiny", Version: "0.9.0", Arch: "x86_64", Board: "x86_64-uefi", Channel: "stable"}
	var cr *ota.CheckResponse
	for i := 0; i < 100; i++ {
		if cr, err = c.Check(ctx, dev); err == nil || !strings.Contains(err.Error(), "connection refused") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !cr.Update || cr.Target.Version != "1.1.0" {
		t.Fatalf("check through kiln serve: %+v (%v)", cr, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("kiln serve exited %d: %s", code, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kiln serve did not stop on cancel")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("kiln serve still listening after it returned")
	}

	// The device table outlives kiln serve.
	stdout.Reset()
	if code := run(t.Context(), env, []string{"devices", "--served"}); code != 0 {
		t.Fatalf("kiln devices --served: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ID", "LAST SEEN", dev.ID, "kiln-tiny", "0.9.0", "update-available", "127.0.0.1"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("kiln devices --served does not show %q:\n%s", want, stdout)
		}
	}
	stdout.Reset()
	db := filepath.Join(os.Getenv("XDG_DATA_HOME"), "kiln", "devices.db")
	if code := run(t.Context(), env, []string{"devices", "--served", "--json", "--db", db}); code != 0 {
		t.Fatalf("kiln devices --served --json: exit %d: %s", code, stderr)
	}
	var served struct{ Result []ota.DeviceStatus }
	if err := json.Unmarshal(stdout.Bytes(), &served); err != nil || len(served.Result) != 1 ||
		served.Result[0].ID != dev.ID || served.Result[0].Offered != "1.1.0" {
		t.Fatalf("kiln devices --served --json: %s (%v)", stdout, err)
	}
	stderr.Reset()
	if code := run(t.Context(), env, []string{"devices", "--served", "--db", filepath.Join(t.TempDir(), "none.db")}); code != 1 || !strings.Contains(stderr.String(), "no device database at") {
		t.Fatalf("kiln devices --served with a missing database: exit %d: %s", code, stderr)
	}
	if code := run(t.Context(), env, []string{"devices", "--db", db}); code != 2 {
		t.Fatalf("kiln devices --db without --served: exit %d, want 2 (usage)", code)
	}
}
