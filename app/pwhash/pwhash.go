// Package pwhash makes crypt(3) password hashes in the SHA-512 scheme ("$6$", Ulrich Drepper's
// "Unix crypt using SHA-256 and SHA-512"), the format /etc/shadow and busybox's login accept, so a
// recipe stores a hash and never the clear-text password.
package pwhash

import (
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	defaultRounds = 5000
	minRounds     = 1000
	maxRounds     = 999999999
	maxSaltLen    = 16
	b64           = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// ErrFormat is returned for a string that is not a "$6$" crypt hash.
var ErrFormat = errors.New("not a SHA-512 crypt hash ($6$…)")

// Hash returns a "$6$" hash of password with a random 16-character salt and the default rounds.
func Hash(password string) (string, error) {
	salt := make([]byte, maxSaltLen)
	raw := make([]byte, maxSaltLen)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("hash password: read random salt: %w", err)
	}
	for i, c := range raw {
		salt[i] = b64[int(c)%len(b64)]
	}
	return Crypt(password, "$6$"+string(salt))
}

// Crypt hashes password with the salt and rounds given in setting ("$6$salt" or
// "$6$rounds=N$salt", optionally followed by "$hash", which is ignored).
func Crypt(password, setting string) (string, error) {
	rest, ok := strings.CutPrefix(setting, "$6$")
	if !ok {
		return "", ErrFormat
	}
	rounds, custom := defaultRounds, false
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, after, found := strings.Cut(r, "$")
		v, err := strconv.Atoi(n)
		if !found || err != nil {
			return "", fmt.Errorf("%w: bad rounds %q", ErrFormat, n)
		}
		rounds, custom, rest = min(max(v, minRounds), maxRounds), true, after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > maxSaltLen {
		salt = salt[:maxSaltLen]
	}
	sum := sha512crypt([]byte(password), []byte(salt), rounds)
	var b strings.Builder
	b.WriteString("$6$")
	if custom {
		fmt.Fprintf(&b, "rounds=%d$", rounds)
	}
	b.WriteString(salt)
	b.WriteByte('$')
	b.WriteString(encode(sum))
	return b.String(), nil
}

// Verify reports whether password matches the "$6$" hash.
func Verify(password, hash string) bool {
	got, err := Crypt(password, hash)
	return err == nil && got == hash
}

// IsHash reports whether s looks like a crypt(3) hash rather than a clear-text password.
func IsHash(s string) bool {
	for _, p := range []string{"$1$", "$5$", "$6$", "$y$", "$2b$", "$2y$"} {
		if strings.HasPrefix(s, p) && strings.Count(s, "$") >= 3 {
			return true
		}
	}
	return false
}

func sha512crypt(pw, salt []byte, rounds int) []byte {
	// Digest B = sha512(pw salt pw).
	h := sha512.New()
	h.Write(pw)
	h.Write(salt)
	h.Write(pw)
	db := h.Sum(nil)

	// Digest A.
	h.Reset()
	h.Write(pw)
	h.Write(salt)
	n := len(pw)
	for ; n > 64; n -= 64 {
		h.Write(db)
	}
	h.Write(db[:n])
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(db)
		} else {
			h.Write(pw)
		}
	}
	da := h.Sum(nil)

	// P sequence from digest DP = sha512(pw repeated len(pw) times).
	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	dp := h.Sum(nil)
	p := make([]byte, 0, len(pw))
	for n := len(pw); n > 0; n -= 64 {
		p = append(p, dp[:min(n, 64)]...)
	}

	// S sequence from digest DS = sha512(salt repeated 16+A[0] times).
	h.Reset()
	for range 16 + int(da[0]) {
		h.Write(salt)
	}
	ds := h.Sum(nil)
	s := ds[:len(salt)]

	c := da
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}
	return c
}

// encode writes the 64-byte digest in crypt's permuted base-64.
func encode(c []byte) string {
	var b strings.Builder
	put := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for ; n > 0; n-- {
			b.WriteByte(b64[w&0x3f])
			w >>= 6
		}
	}
	for i := range 21 {
		x, y, z := c[i], c[i+21], c[i+42]
		switch i % 3 {
		case 0:
			put(x, y, z, 4)
		case 1:
			put(y, z, x, 4)
		default:
			put(z, x, y, 4)
		}
	}
	put(0, 0, c[63], 2)
	return b.String()
}
