package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

func start(t *testing.T) (*server.Server, string, []byte, ota.Target) {
	t.Helper()
	keys := otatest.Keys(t)
	dir := t.TempDir()
	payload := otatest.Payload(1<<20, 7)
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(1<<20, 6), repo.Options{NoDeltas: true})
	pub := otatest.Publish(t, dir, keys, "1.1.0", payload, repo.Options{NoDeltas: true})
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s, dir, payload, pub.Target
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestServeFilesRangesAndETags(t *testing.T) {
	s, _, payload, tgt := start(t)
	url := s.URL() + "/" + ota.TargetFile(tgt.Path, tgt.SHA256)

	resp, body := get(t, url, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
		t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+tgt.SHA256+`"` {
		t.Errorf("ETag %s, want the payload's sha256", etag)
	}
	resp, body = get(t, url, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != 206 || !bytes.Equal(body, payload[1000:2000]) {
		t.Fatalf("Range: %s, %d bytes", resp.Status, len(body))
	}
	resp, body = get(t, url, map[string]string{"Range": "bytes=1000-", "If-Range": etag})
	if resp.StatusCode != 206 || !bytes.Equal(body, payload[1000:]) {
		t.Fatalf("If-Range matching: %s", resp.Status)
	}
	resp, body = get(t, url, map[string]string{"Range": "bytes=1000-", "If-Range": `"other"`})
	if resp.StatusCode != 200 || len(body) != len(payload) {
		t.Fatalf("If-Range not matching: %s, %d bytes; want the whole file", resp.Status, len(body))
	}
	resp, _ = get(t, url, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %s", resp.Status)
	}
	head, err := http.Head(url)
	if err != nil || head.ContentLength != int64(len(payload)) {
		t.Fatalf("HEAD: %v, length %d", err, head.ContentLength)
	}
	resp, body = get(t, s.URL()+"/metadata/timestamp.json", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"timestamp"`)) {
		t.Fatalf("timestamp.json: %s", resp.Status)
	}
}

func TestNoPathEscapes(t *testing.T) {
	s, dir, _, _ := start(t)
	secret := filepath.Join(filepath.Dir(dir), "secret.txt")
	os.WriteFile(secret, []byte("secret"), 0o644)
	t.Cleanup(func() { os.Remove(secret) })
	os.Symlink(secret, filepath.Join(dir, "targets", "link.efi"))
	os.Symlink("../../secret.txt", filepath.Join(dir, "targets", "rel.efi"))
	for _, p := range []string{
		"/targets/../../secret.txt", "/targets/..%2f..%2fsecret.txt", "/metadata/%2e%2e/%2e%2e/secret.txt",
		"/targets/link.efi", "/targets/rel.efi", "/.lock", "/metadata/.timestamp.json.tmp", "/keys/root.key",
		"/targets/", "/metadata",
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+p, nil)
		req.URL.RawPath = p
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || bytes.Contains(body, []byte("secret")) {
			t.Errorf("GET %s: %s %q; want it refused", p, resp.Status, body)
		}
	}
}

func post(t *testing.T, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestCheckReportDevices(t *testing.T) {
	s, _, _, tgt := start(t)
	d := newDevice("tiny", "1.0.0")
	resp, b := d.post(t, s.URL()+"/v1/check", ota.CheckRequest{Device: d.dev})
	var cr ota.CheckResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &cr) != nil {
		t.Fatalf("check: %s %s", resp.Status, b)
	}
	if !cr.Update || cr.Target.Version != "1.1.0" || cr.Target.SHA256 != tgt.SHA256 || cr.Target.URL != "/"+ota.TargetFile(tgt.Path, tgt.SHA256) {
		t.Fatalf("check answer %+v", cr)
	}

	for _, bad := range []struct {
		body []byte
		code int
	}{
		{[]byte(`{"id":"x","version":"1.0.0","state":"` + strings.Repeat("a", 20<<10) + `"}`), 413},
		{[]byte(`{"id":"` + d.dev.ID + `","key":"` + d.dev.Key + `","name":"tiny","version":"1.0.0","state":"pwned"}`), 400},
		{[]byte(`{"version":"1.0.0","state":"healthy"}`), 400},
		{[]byte(`not json`), 400},
	} {
		if resp, b := d.postRaw(t, s.URL()+"/v1/report", bad.body); resp.StatusCode != bad.code {
			t.Errorf("report %.40s: %s %s, want %d", bad.body, resp.Status, b, bad.code)
		}
	}
	d.dev.Version = "1.1.0"
	if resp, b := d.post(t, s.URL()+"/v1/report", ota.Report{Device: d.dev, State: ota.StateHealthy, Target: "1.1.0"}); resp.StatusCode != 204 {
		t.Fatalf("report: %s %s", resp.Status, b)
	}
	resp, b = get(t, s.URL()+"/v1/devices", nil)
	var table []ota.DeviceStatus
	if err := json.Unmarshal(b, &table); err != nil {
		t.Fatal(err)
	}
	if len(table) != 1 || table[0].ID != d.dev.ID || table[0].Version != "1.1.0" || table[0].State != ota.StateHealthy {
		t.Fatalf("device table %+v", table)
	}
	if got := s.Devices(); len(got) != 1 || got[0].State != ota.StateHealthy {
		t.Fatalf("Devices() = %+v", got)
	}
}

func TestToggle(t *testing.T) {
	s, _, _, _ := start(t)
	url := s.URL()
	if err := s.Start(context.Background()); err != server.ErrRunning {
		t.Fatalf("second Start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url + "/v1/info"); err == nil {
		t.Fatal("server still answers after Stop")
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, b := get(t, s.URL()+"/v1/info", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"protocol":"`+ota.ProtocolVersion+`"`) {
		t.Fatalf("info after restart: %s %s", resp.Status, b)
	}
}
