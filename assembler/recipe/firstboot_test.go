package recipe

import (
	"strings"
	"testing"
)

func TestParseAuthorizedKeys(t *testing.T) {
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0eJ7GpKx6ZQm4R4Hc0m2lJ7c4yO7nQ6Xh0b2J5s9B a@b"
	keys, err := ParseAuthorizedKeys([]byte("# laptop\n\n" + key + "\r\n  " + key + "  \n"))
	if err != nil || len(keys) != 2 || keys[0] != key || keys[1] != key {
		t.Fatalf("%q %v", keys, err)
	}
	for in, want := range map[string]string{
		"":                   "no public key",
		"# only a comment\n": "no public key",
		key + "\n-----BEGIN OPENSSH PRIVATE KEY-----\n": "line 2: this is a private key",
		"ssh-ed25519 !!!\n":                             "key data is not valid",
	} {
		if _, err := ParseAuthorizedKeys([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestCheckFirstBoot(t *testing.T) {
	if err := CheckFirstBoot(System{}); err != nil {
		t.Fatalf("no settings: %v", err)
	}
	err := CheckFirstBoot(System{Hostname: "-bad", Timezone: "Nowhere/City", WiFi: &WiFi{SSID: "x", PSK: "secret-psk-0"[:5]}})
	for _, want := range []string{"system.hostname", "system.timezone", "system.wifi.psk"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
