package client_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
)

// TestSignedCheckWithWrongClock: a device whose clock is an hour off (no RTC, no NTP yet) is
// refused once, takes the server's time from the answer and is accepted with a new signature.
func TestSignedCheckWithWrongClock(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	serverTime := time.Now().Add(time.Hour)
	var refused, accepted int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", serverTime.UTC().Format(http.TimeFormat))
		body, _ := io.ReadAll(r.Body)
		var req ota.CheckRequest
		sig, err := ota.ParseSignature(r.Header.Get(ota.SignatureHeader))
		if err == nil {
			err = sig.Verify(pub, r.URL.Path, body, serverTime)
		}
		if err != nil || json.Unmarshal(body, &req) != nil || req.Key != ota.KeyString(pub) {
			refused++
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		accepted++
		json.NewEncoder(w).Encode(ota.CheckResponse{Message: "up to date"})
	}))
	defer ts.Close()

	c := &client.Client{BaseURL: ts.URL, Key: key}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := ota.Device{ID: ota.DeviceID("tiny", pub), Key: ota.KeyString(pub), Name: "tiny", Version: "1.0.0"}
	if _, err := c.Check(ctx, d); err != nil {
		t.Fatalf("check with a clock an hour behind: %v", err)
	}
	if _, err := c.Check(ctx, d); err != nil {
		t.Fatalf("second check: %v", err)
	}
	if refused != 1 || accepted != 2 {
		t.Fatalf("%d refused, %d accepted; want one refusal, then the server's time used", refused, accepted)
	}
}
