package server_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// device is a simulated device with its identity key.
type device struct {
	key ed25519.PrivateKey
	dev ota.Device
}

func newDevice(name, version string) *device {
	pub, key, _ := ed25519.GenerateKey(nil)
	return &device{key: key, dev: ota.Device{ID: ota.DeviceID(name, pub), Key: ota.KeyString(pub), Name: name,
		Version: version, Arch: "x86_64", Board: "pc", Channel: "stable"}}
}

// request makes a signed POST of v to path, as if from addr ("host:port").
func (d *device) request(path string, v any, addr string, at time.Time) *http.Request {
	body, _ := json.Marshal(v)
	return d.requestRaw(path, body, addr, at)
}

func (d *device) requestRaw(path string, body []byte, addr string, at time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.RemoteAddr = addr
	r.Header.Set(ota.SignatureHeader, ota.SignRequest(d.key, path, body, at, ota.NewNonce()))
	return r
}

// post sends a signed request to a running server.
func (d *device) post(t *testing.T, url string, v any) (*http.Response, []byte) {
	t.Helper()
	body, _ := json.Marshal(v)
	return d.postRaw(t, url, body)
}

func (d *device) postRaw(t *testing.T, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set(ota.SignatureHeader, ota.SignRequest(d.key, req.URL.Path, body, time.Now(), ota.NewNonce()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// newHandler is a server over a small repository (1.0.0 and 1.1.0), not listening.
func newHandler(t testing.TB, maxDevices int) (*server.Server, http.Handler) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	otatest.Publish(t, dir, keys, "1.1.0", otatest.Payload(4<<10, 2), repo.Options{NoDeltas: true})
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0", MaxDevices: maxDevices})
	if err != nil {
		t.Fatal(err)
	}
	return s, s.Handler()
}

func row(s *server.Server, id string) *ota.DeviceStatus {
	for _, r := range s.Devices() {
		if r.ID == id {
			return &r
		}
	}
	return nil
}

const lan = "192.168.1.20:40000"

func TestSpoofedReportRefused(t *testing.T) {
	s, h := newHandler(t, 0)
	real := newDevice("tiny", "1.1.0")
	if w := serve(h, real.request("/v1/report", ota.Report{Device: real.dev, State: ota.StateHealthy}, lan, time.Now())); w.Code != 204 {
		t.Fatalf("real report: %d %s", w.Code, w.Body)
	}
	spoof := ota.Report{Device: real.dev, State: ota.StateRolledBack, Target: "1.1.0"}
	attacker := newDevice("tiny", "1.1.0")

	for name, r := range map[string]*http.Request{
		// the real device's ID and key, signed with the attacker's key
		"signed by another key": attacker.request("/v1/report", spoof, "192.168.1.66:5000", time.Now()),
		// the real device's ID with the attacker's key
		"another key": attacker.request("/v1/report", func() ota.Report {
			r := spoof
			r.Key = attacker.dev.Key
			return r
		}(), "192.168.1.66:5000", time.Now()),
		// no signature at all
		"unsigned": httptest.NewRequest(http.MethodPost, "/v1/report", strings.NewReader(fmt.Sprintf(
			`{"id":%q,"key":%q,"name":"tiny","version":"1.1.0","state":"rolled-back"}`, real.dev.ID, real.dev.Key))),
		// signed for /v1/check, sent to /v1/report
		"other path": func() *http.Request {
			r := real.request("/v1/check", spoof, lan, time.Now())
			r.URL.Path = "/v1/report"
			return r
		}(),
	} {
		w := serve(h, r)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 401 or 403", name, w.Code, w.Body)
		}
	}
	if got := row(s, real.dev.ID); got == nil || got.State != ota.StateHealthy {
		t.Fatalf("real device after spoofing: %+v, want still healthy", got)
	}
}

func TestReplayRefused(t *testing.T) {
	s, h := newHandler(t, 0)
	d := newDevice("tiny", "1.1.0")
	body, _ := json.Marshal(ota.Report{Device: d.dev, State: ota.StateRolledBack, Target: "1.2.0"})
	first := d.requestRaw("/v1/report", body, lan, time.Now())
	sig := first.Header.Get(ota.SignatureHeader)
	if w := serve(h, first); w.Code != 204 {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	if w := serve(h, d.request("/v1/report", ota.Report{Device: d.dev, State: ota.StateHealthy}, lan, time.Now())); w.Code != 204 {
		t.Fatalf("healthy: %d %s", w.Code, w.Body)
	}
	again := httptest.NewRequest(http.MethodPost, "/v1/report", bytes.NewReader(body))
	again.RemoteAddr = lan
	again.Header.Set(ota.SignatureHeader, sig)
	if w := serve(h, again); w.Code != http.StatusConflict {
		t.Errorf("replayed report: %d %s, want 409", w.Code, w.Body)
	}
	old := d.request("/v1/report", ota.Report{Device: d.dev, State: ota.StateFailed}, lan, time.Now().Add(-10*time.Minute))
	if w := serve(h, old); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "clock") {
		t.Errorf("report signed 10 minutes ago: %d %s, want 401 naming the clock", w.Code, w.Body)
	}
	if got := row(s, d.dev.ID); got == nil || got.State != ota.StateHealthy {
		t.Fatalf("after replays: %+v, want healthy", got)
	}
}

func TestLongFieldsRefused(t *testing.T) {
	s, h := newHandler(t, 0)
	d := newDevice("tiny", "1.0.0-"+strings.Repeat("a", 14<<10))
	w := serve(h, d.request("/v1/check", ota.CheckRequest{Device: d.dev}, lan, time.Now()))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "version") {
		t.Errorf("14 KB version: %d %.200s, want 400 naming the version", w.Code, w.Body)
	}
	d = newDevice("tiny", "1.0.0")
	d.dev.Skip = []string{"1.0.1-" + strings.Repeat("b", 4<<10)}
	if w := serve(h, d.request("/v1/check", ota.CheckRequest{Device: d.dev}, lan, time.Now())); w.Code != http.StatusBadRequest {
		t.Errorf("4 KB skipped version: %d %.200s, want 400", w.Code, w.Body)
	}
	if w := serve(h, d.request("/v1/report", ota.Report{Device: d.dev, State: ota.StateFailed, Target: strings.Repeat("9", 200)}, lan, time.Now())); w.Code != http.StatusBadRequest {
		t.Errorf("200-character target: %d %.200s, want 400", w.Code, w.Body)
	}
	if n := len(s.Devices()); n != 0 {
		t.Fatalf("refused requests made %d rows", n)
	}
}

func TestDeviceTableForOwnerOnly(t *testing.T) {
	_, h := newHandler(t, 0)
	get := func(path, addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = addr
		return serve(h, r)
	}
	if w := get("/v1/devices", lan); w.Code != http.StatusForbidden {
		t.Errorf("/v1/devices from the LAN: %d %s, want 403", w.Code, w.Body)
	}
	if w := get("/v1/devices", "[fe80::1]:4000"); w.Code != http.StatusForbidden {
		t.Errorf("/v1/devices from an IPv6 neighbour: %d, want 403", w.Code)
	}
	for _, owner := range []string{"127.0.0.1:5000", "[::1]:5000"} {
		if w := get("/v1/devices", owner); w.Code != http.StatusOK {
			t.Errorf("/v1/devices from %s: %d %s, want 200", owner, w.Code, w.Body)
		}
	}
	var info map[string]string
	json.Unmarshal(get("/v1/info", lan).Body.Bytes(), &info)
	if _, ok := info["host"]; ok || info["fingerprint"] == "" {
		t.Errorf("/v1/info to the LAN: %v, want the fingerprint and no host name", info)
	}
	json.Unmarshal(get("/v1/info", "127.0.0.1:5000").Body.Bytes(), &info)
	if info["host"] == "" {
		t.Errorf("/v1/info to the owner: %v, want the host name", info)
	}
}

func TestNewDeviceFloodKeepsRealDevices(t *testing.T) {
	const max = 64
	s, h := newHandler(t, max)
	var real []*device
	for i := range 3 {
		d := newDevice("tiny", "1.0.0")
		addr := fmt.Sprintf("192.168.1.%d:4000", 10+i)
		// Every agent checks at start and every few minutes; one reports too.
		for range 2 {
			if w := serve(h, d.request("/v1/check", ota.CheckRequest{Device: d.dev}, addr, time.Now())); w.Code != 200 {
				t.Fatalf("real device check: %d %s", w.Code, w.Body)
			}
		}
		real = append(real, d)
	}
	if w := serve(h, real[0].request("/v1/report", ota.Report{Device: real[0].dev, State: ota.StateHealthy}, "192.168.1.10:4000", time.Now())); w.Code != 204 {
		t.Fatalf("real device report: %d %s", w.Code, w.Body)
	}

	flood := func(n int, addr func(i int) string) (accepted, limited int) {
		for i := range n {
			d := newDevice("tiny", "1.0.0")
			switch w := serve(h, d.request("/v1/check", ota.CheckRequest{Device: d.dev}, addr(i), time.Now())); w.Code {
			case 200:
				accepted++
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				limited++
			default:
				t.Fatalf("flood: %d %s", w.Code, w.Body)
			}
		}
		return
	}
	// 1,024 IDs from one address: a handful get in.
	if accepted, _ := flood(1024, func(int) string { return "192.168.1.66:5000" }); accepted > 32 {
		t.Errorf("one address added %d device IDs in a burst", accepted)
	}
	// IDs from 512 addresses fill the table, but only with each other.
	flood(512, func(i int) string { return fmt.Sprintf("10.0.%d.%d:5000", i/256, i%256) })
	if n := len(s.Devices()); n > max {
		t.Errorf("table has %d rows, more than its %d", n, max)
	}
	for i, d := range real {
		if r := row(s, d.dev.ID); r == nil {
			t.Errorf("real device %d evicted by the flood", i)
		}
	}
	if r := row(s, real[0].dev.ID); r == nil || r.State != ota.StateHealthy {
		t.Errorf("real device 0 after the flood: %+v", r)
	}
}

// TestUnsignedCheckNotRecorded: a device with an agent older than device keys still learns of
// its update (so it can install an agent that signs) but cannot write to the device table.
func TestUnsignedCheckNotRecorded(t *testing.T) {
	s, h := newHandler(t, 0)
	r := httptest.NewRequest(http.MethodPost, "/v1/check", strings.NewReader(`{"id":"tiny-0011223344556677","name":"tiny","version":"1.0.0","arch":"x86_64","board":"pc","channel":"stable"}`))
	r.RemoteAddr = lan
	w := serve(h, r)
	var cr ota.CheckResponse
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &cr) != nil || !cr.Update || cr.Target.Version != "1.1.0" {
		t.Fatalf("unsigned check: %d %s", w.Code, w.Body)
	}
	if n := len(s.Devices()); n != 0 {
		t.Fatalf("an unsigned check made %d rows", n)
	}
	// A key without a signature is not an old agent: refused.
	d := newDevice("tiny", "1.0.0")
	body, _ := json.Marshal(ota.CheckRequest{Device: d.dev})
	r = httptest.NewRequest(http.MethodPost, "/v1/check", bytes.NewReader(body))
	if w := serve(h, r); w.Code != http.StatusUnauthorized {
		t.Fatalf("check with a key and no signature: %d %s", w.Code, w.Body)
	}
}
