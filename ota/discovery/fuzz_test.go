package discovery

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/brutella/dnssd"

	"github.com/kilnproject/kiln/ota"
)

// FuzzMatch feeds browse entries as a hostile LAN host could announce them (any TXT values,
// addresses, port and interface name) to match: it never panics, and what it accepts has the
// protocol version and a shared root key, and a URL that parses back to the announced address
// and port.
func FuzzMatch(f *testing.F) {
	f.Add("Kiln updates on desk", "1", "0123456789abcdef", "0123456789abcdef", []byte{0, 192, 168, 1, 10}, 8080, "eth0")
	f.Add("x", "1", "aaaa,bbbb", "cccc,bbbb", append([]byte{1}, net.ParseIP("fe80::1").To16()...), 1, "wlan0")
	f.Add("x", "2", "", "", []byte{}, 0, "")
	f.Add("x", "1", ",", ",", []byte{1, 2, 3}, 70000, "e th%0")
	f.Fuzz(func(t *testing.T, name, v, fp, want string, ips []byte, port int, iface string) {
		var list []net.IP
		for len(ips) > 0 { // split the bytes into addresses of 4 or 16 bytes (and a rest)
			n := 4
			if ips[0]&1 == 1 && len(ips) >= 17 {
				n = 16
			}
			n = min(n+1, len(ips))
			list = append(list, net.IP(ips[1:n]))
			ips = ips[n:]
		}
		e := dnssd.BrowseEntry{Name: name, IPs: list, Port: port, IfaceName: iface, Text: map[string]string{"v": v, "fp": fp}}
		got := match(e, want)
		if got == nil {
			return
		}
		if v != ota.ProtocolVersion || port <= 0 || port > 65535 {
			t.Fatalf("accepted v=%q port=%d", v, port)
		}
		if want != "" {
			shared := false
			for _, w := range strings.Split(want, ",") {
				shared = shared || w != "" && strings.Contains(","+fp+",", ","+w+",")
			}
			if !shared {
				t.Fatalf("accepted fp %q for %q", fp, want)
			}
		}
		u, err := url.Parse(got.URL)
		if err != nil || u.Scheme != "http" || u.Port() != strconv.Itoa(port) {
			t.Fatalf("URL %q: %v", got.URL, err)
		}
		host, _, _ := strings.Cut(u.Hostname(), "%")
		ip := net.ParseIP(host)
		announced := false
		for _, c := range list {
			announced = announced || c.Equal(ip)
		}
		if ip == nil || !announced {
			t.Fatalf("URL %q names %q, not one of the announced addresses %v", got.URL, host, list)
		}
	})
}
