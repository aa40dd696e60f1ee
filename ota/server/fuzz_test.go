package server

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

const fuzzMaxDevices = 8

var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// fuzzDevice is a device body signed by fuzzKey, so that mutations of it get past the signature.
func fuzzDevice() ota.Device {
	pub := fuzzKey.Public().(ed25519.PublicKey)
	return ota.Device{ID: ota.DeviceID("tiny", pub), Key: ota.KeyString(pub), Name: "tiny", Version: "1.0.0",
		Arch: "x86_64", Board: "pc", Channel: "stable", Skip: []string{"1.0.1"}}
}

// fuzzHandler sends arbitrary bodies and signature headers, from arbitrary LAN or loopback
// addresses, through the real handler of path. The fuzzer chooses whether the body is signed
// with fuzzKey. The server answers every request with a client error or success (a 5xx only
// for a table full of established devices), never panics, and its table stays within its
// bounds.
func fuzzHandler(f *testing.F, path string, seeds ...any) {
	keys := otatest.Keys(f)
	dir := f.TempDir()
	otatest.Publish(f, dir, keys, "1.0.0", otatest.Payload(4<<10, 1), repo.Options{NoDeltas: true})
	otatest.Publish(f, dir, keys, "1.1.0", otatest.Payload(4<<10, 2), repo.Options{NoDeltas: true})
	s, err := New(Config{Repo: dir, Addr: "127.0.0.1:0", MaxDevices: fuzzMaxDevices})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	for _, v := range seeds {
		body, _ := json.Marshal(v)
		f.Add(body, "", true, byte(1))
	}
	f.Add([]byte(`{"id":"x","version":"1.0.0"}`), "t=1,n=a,s=AAAA", false, byte(0))
	f.Add([]byte(`{"id":"`+fuzzDevice().ID+`","key":"`+fuzzDevice().Key+`","name":"tiny","version":"1.0.0","state":"healthy"}`), "", true, byte(2))
	var nonce atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte, header string, sign bool, from byte) {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.RemoteAddr = "10.0.0." + strconv.Itoa(int(from)) + ":4000"
		if from == 0 {
			r.RemoteAddr = "127.0.0.1:4000"
		}
		if sign {
			header = ota.SignRequest(fuzzKey, path, body, time.Now(), strconv.FormatInt(nonce.Add(1), 10))
		}
		r.Header.Set(ota.SignatureHeader, header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			var resp ota.CheckResponse
			if path != "/v1/check" || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.Update && resp.Target == nil {
				t.Fatalf("200 to %s: %s", path, w.Body)
			}
		case http.StatusNoContent:
			if path != "/v1/report" {
				t.Fatalf("204 to %s", path)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict,
			http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		case http.StatusServiceUnavailable:
			if s.devs.len() < fuzzMaxDevices {
				t.Fatalf("503 with room in the table: %s", w.Body)
			}
		default:
			t.Fatalf("%d: %s", w.Code, w.Body)
		}
		if n := s.devs.len(); n > fuzzMaxDevices {
			t.Fatalf("device table has %d rows, more than %d", n, fuzzMaxDevices)
		}
		for _, d := range s.Devices() {
			if len(d.ID) > maxField || len(d.Version) > maxVersion || len(d.Target) > maxVersion || len(d.Message) > maxMessage {
				t.Fatalf("row beyond the field limits: %+v", d)
			}
		}
	})
}

func FuzzCheckHandler(f *testing.F) {
	fuzzHandler(f, "/v1/check", ota.CheckRequest{Device: fuzzDevice()})
}

func FuzzReportHandler(f *testing.F) {
	fuzzHandler(f, "/v1/report",
		ota.Report{Device: fuzzDevice(), State: ota.StateHealthy, Target: "1.0.0", Message: "ok"},
		ota.Report{Device: fuzzDevice(), State: ota.StateRolledBack, Target: "1.1.0", Message: "health check failed"})
}
