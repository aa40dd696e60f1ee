package initramfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServices checks the inittab lines and supervisor scripts of the recipe's services: run as
// their user, output to /var/log, restart policy, waiting for the network; the gettys and the
// agent stay.
func TestServices(t *testing.T) {
	s := fullSpec(t)
	s.Services = []Service{
		{Name: "garden", Command: `python3 /opt/garden.py --greeting 'it''s up'`, User: "pi", Restart: "on-failure", AfterNetwork: true},
		{Name: "ticker", Command: "date"},
		{Name: "once", Command: "touch /run/x", Restart: "no"},
	}
	r, err := Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := unpack(t, r)
	tab, err := os.ReadFile(filepath.Join(dir, "etc/inittab"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"::sysinit:/etc/init.d/rcS\n", "::respawn:/etc/kiln/services/garden\n::respawn:/etc/kiln/services/ticker\n::respawn:/etc/kiln/services/once\n",
		"::respawn:/etc/init.d/kiln-agent\n", "ttyS0::respawn:"} {
		if !strings.Contains(string(tab), want) {
			t.Errorf("inittab lacks %q:\n%s", want, tab)
		}
	}
	read := func(name string) string {
		fi, err := os.Stat(filepath.Join(dir, "etc/kiln/services", name))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("service script %s: %v", name, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "etc/kiln/services", name))
		return string(b)
	}
	garden := read("garden")
	for _, want := range []string{`su -s /bin/sh -c 'python3 /opt/garden.py --greeting '\''it'\'''\''s up'\''' 'pi'`,
		"exec >>/var/log/garden.log 2>&1", "grep -q '^default'", `[ $rc -eq 0 ] && : >"$done"`} {
		if !strings.Contains(garden, want) {
			t.Errorf("garden script lacks %q:\n%s", want, garden)
		}
	}
	if ticker := read("ticker"); !strings.Contains(ticker, "/bin/sh -c 'date'") || strings.Contains(ticker, `: >"$done"`) || strings.Contains(ticker, "ip route") {
		t.Errorf("ticker script:\n%s", ticker)
	}
	if once := read("once"); !strings.Contains(once, "rc=$?\n") || !strings.Contains(once, ": >\"$done\"\nsleep 1\n") {
		t.Errorf("once script:\n%s", once)
	}

	s.Services = []Service{{Name: "x", Command: "a\nb"}}
	if _, err := Build(context.Background(), s); !errors.Is(err, ErrBadSetting) {
		t.Errorf("command with a line break: %v", err)
	}
}
