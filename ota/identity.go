package ota

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Device identity: every device has an ed25519 key made on its first boot. Its ID is derived
// from the public key, and each /v1/check and /v1/report carries the public key (Device.Key)
// and, in the SignatureHeader, a signature over the request path, a timestamp, a nonce and the
// exact body. The server pins the key of each ID on first contact.

// SignatureHeader carries a request's signature: "t=<unix seconds>,n=<nonce>,s=<base64 signature>".
const SignatureHeader = "Kiln-Signature"

// SignatureWindow is how far a request's timestamp may be from the server's clock.
const SignatureWindow = 5 * time.Minute

// Errors of request authentication.
var (
	ErrUnsigned     = errors.New("request not signed by a device key")
	ErrBadSignature = errors.New("bad request signature")
	ErrStale        = errors.New("request timestamp outside the accepted window")
)

const (
	signContext = "kiln-request-v1\n"
	maxNonce    = 64
	keyIDLen    = 16 // hex digits of sha256(public key) in a device ID
)

// KeyString encodes a device's public key for Device.Key.
func KeyString(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParseKey decodes Device.Key.
func ParseKey(s string) (ed25519.PublicKey, error) {
	if len(s) != base64.StdEncoding.EncodedLen(ed25519.PublicKeySize) {
		return nil, fmt.Errorf("device key: want %d base64 characters", base64.StdEncoding.EncodedLen(ed25519.PublicKeySize))
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	return ed25519.PublicKey(b), nil
}

// DeviceID is the ID of device name with public key pub: "<name>-<16 hex digits of
// sha256(pub)>". Nobody without the private key can send requests under it.
func DeviceID(name string, pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	id := hex.EncodeToString(sum[:])[:keyIDLen]
	if name == "" {
		return id
	}
	return name + "-" + id
}

// Signature is a parsed SignatureHeader.
type Signature struct {
	Time  time.Time
	Nonce string
	Sig   []byte
}

func signedMessage(path string, t time.Time, nonce string, body []byte) []byte {
	msg := make([]byte, 0, len(signContext)+len(path)+len(nonce)+len(body)+24)
	msg = append(msg, signContext...)
	msg = append(msg, path...)
	msg = append(msg, '\n')
	msg = strconv.AppendInt(msg, t.Unix(), 10)
	msg = append(msg, '\n')
	msg = append(msg, nonce...)
	msg = append(msg, '\n')
	return append(msg, body...)
}

// SignRequest returns the SignatureHeader value for a request to path (e.g. "/v1/report")
// with body, made at t, with nonce (NewNonce: at most 64 letters, digits, - or _).
func SignRequest(key ed25519.PrivateKey, path string, body []byte, t time.Time, nonce string) string {
	sig := ed25519.Sign(key, signedMessage(path, t, nonce, body))
	return "t=" + strconv.FormatInt(t.Unix(), 10) + ",n=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(sig)
}

// ParseSignature parses a SignatureHeader value.
func ParseSignature(h string) (Signature, error) {
	if h == "" {
		return Signature{}, ErrUnsigned
	}
	var s Signature
	var seen [3]bool
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Signature{}, fmt.Errorf("%w: %q is not key=value", ErrBadSignature, part)
		}
		switch k {
		case "t":
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil || sec < 0 || seen[0] {
				return Signature{}, fmt.Errorf("%w: bad time %q", ErrBadSignature, v)
			}
			s.Time, seen[0] = time.Unix(sec, 0), true
		case "n":
			if !validNonce(v) || seen[1] {
				return Signature{}, fmt.Errorf("%w: nonce must be 1-%d letters, digits, - or _", ErrBadSignature, maxNonce)
			}
			s.Nonce, seen[1] = v, true
		case "s":
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(b) != ed25519.SignatureSize || seen[2] {
				return Signature{}, fmt.Errorf("%w: signature is not %d base64 bytes", ErrBadSignature, ed25519.SignatureSize)
			}
			s.Sig, seen[2] = b, true
		default:
			return Signature{}, fmt.Errorf("%w: unknown field %q", ErrBadSignature, k)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return Signature{}, fmt.Errorf("%w: t, n and s are required", ErrBadSignature)
	}
	return s, nil
}

func validNonce(n string) bool {
	if n == "" || len(n) > maxNonce {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Verify checks the signature of a request to path with body against pub, and that it was
// made within SignatureWindow of now.
func (s Signature) Verify(pub ed25519.PublicKey, path string, body []byte, now time.Time) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, signedMessage(path, s.Time, s.Nonce, body), s.Sig) {
		return ErrBadSignature
	}
	if d := now.Sub(s.Time); d > SignatureWindow || d < -SignatureWindow {
		return fmt.Errorf("%w: signed at %s, server time %s (set the device's clock)", ErrStale,
			s.Time.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// NewNonce returns a random nonce for SignRequest.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
