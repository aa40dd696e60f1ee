package pwhash

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// Vectors from the specification ("Unix crypt using SHA-256 and SHA-512", Drepper).
func TestCryptSpecVectors(t *testing.T) {
	for _, c := range []struct{ setting, pw, want string }{
		{"$6$saltstring", "Hello world!",
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"$6$rounds=5000$toolongsaltstring", "This is just a test",
			"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	} {
		got, err := Crypt(c.pw, c.setting)
		if err != nil || got != c.want {
			t.Errorf("Crypt(%q, %q) = %q, %v; want %q", c.pw, c.setting, got, err, c.want)
		}
	}
}

// The hash a user gets must be accepted by the system's own crypt: compare with openssl passwd -6.
func TestHashMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Missing(t, "openssl not installed")
	}
	h, err := Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	salt := strings.Split(h, "$")[2]
	out, err := exec.Command("openssl", "passwd", "-6", "-salt", salt, "correct horse battery staple").Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != h {
		t.Errorf("openssl says %q, we made %q", got, h)
	}
	if !Verify("correct horse battery staple", h) || Verify("wrong", h) {
		t.Error("Verify does not tell the right password from a wrong one")
	}
	if !IsHash(h) || IsHash("hunter2") {
		t.Error("IsHash misclassifies")
	}
}
