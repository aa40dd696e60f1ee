package ota_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
)

var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// FuzzSignature: any Kiln-Signature header parses or fails with an error (never a panic), a
// parsed header verifies only for the signed path and body, and what SignRequest makes
// round-trips.
func FuzzSignature(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(ota.SignRequest(fuzzKey, "/v1/check", []byte(`{"id":"x"}`), now, "0123456789abcdef"), "/v1/check", []byte(`{"id":"x"}`), "n1", int64(0))
	f.Add("t=1,n=a,s=", "/v1/report", []byte{}, "a", int64(-400))
	f.Add("t=-1,n=,s=AAAA,t=2", "", []byte("{}"), "", int64(400))
	f.Add("garbage", "/v1/check\n", []byte("\n"), "a,b", int64(1))
	pub := fuzzKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, header, path string, body []byte, nonce string, skew int64) {
		if sig, err := ota.ParseSignature(header); err == nil {
			if len(sig.Sig) != ed25519.SignatureSize || sig.Nonce == "" {
				t.Fatalf("parsed %q into %+v", header, sig)
			}
			_ = sig.Verify(pub, path, body, now) // any answer, no panic
		} else if !errors.Is(err, ota.ErrUnsigned) && !errors.Is(err, ota.ErrBadSignature) {
			t.Fatalf("ParseSignature(%q): %v is neither ErrUnsigned nor ErrBadSignature", header, err)
		}

		at := now.Add(time.Duration(skew%3600) * time.Second)
		h := ota.SignRequest(fuzzKey, path, body, at, nonce)
		sig, err := ota.ParseSignature(h)
		if err != nil {
			return // a nonce SignRequest's callers must not use; NewNonce never makes one
		}
		if sig.Nonce != nonce || !sig.Time.Equal(at) {
			t.Fatalf("round trip of %q: %+v", h, sig)
		}
		err = sig.Verify(pub, path, body, now)
		if inWindow := at.Sub(now).Abs() <= ota.SignatureWindow; inWindow != (err == nil) {
			t.Fatalf("signed %s from now: Verify = %v", at.Sub(now), err)
		}
		if sig.Verify(pub, path+"x", body, now) == nil || sig.Verify(pub, path, append(body, 'x'), now) == nil {
			t.Fatal("signature verifies for another path or body")
		}
	})
}

func TestNonceIsValid(t *testing.T) {
	h := ota.SignRequest(fuzzKey, "/v1/check", nil, time.Now(), ota.NewNonce())
	if _, err := ota.ParseSignature(h); err != nil {
		t.Fatal(err)
	}
}
