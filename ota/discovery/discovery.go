// Package discovery advertises an update server on the LAN with DNS-SD (mDNS, service type
// _kiln-ota._tcp) and finds one from a device. The TXT record carries the protocol version ("v")
// and the fingerprint of the trust root the repository is signed under ("fp"), so a device
// skips servers of other owners without talking to them.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/brutella/dnssd"
	dnslog "github.com/brutella/dnssd/log"

	"github.com/kilnproject/kiln/ota"
)

// ErrLoopback: a server bound to a loopback address is not advertised (no one else could reach it).
var ErrLoopback = errors.New("not advertised: the server listens on loopback only")

// maxFingerprint bounds the "fp" TXT value read (a few 16-digit key IDs).
const maxFingerprint = 1024

// ErrNotFound: no matching server answered in time.
var ErrNotFound = errors.New("no update server found on the LAN")

func init() {
	// The library logs to stdout by default; keep it quiet.
	dnslog.Info.Disable()
	dnslog.Debug.Disable()
}

// Service is an advertisement.
type Service struct {
	// Name is the instance name, e.g. "Kiln updates on desk".
	Name string
	// IP is the address the server listens on; nil or unspecified means every interface.
	IP   net.IP
	Port int
	// Fingerprint of the trust root (repo.Fingerprint).
	Fingerprint string
}

// Advertise announces s until ctx is cancelled; it returns once the responder runs, and the
// returned function stops it and waits for the goodbye packets.
func Advertise(ctx context.Context, s Service) (stop func(), err error) {
	cfg := dnssd.Config{
		Name: s.Name,
		Type: ota.ServiceType,
		Port: s.Port,
		Text: map[string]string{"v": ota.ProtocolVersion, "fp": s.Fingerprint, "path": "/"},
	}
	if s.IP != nil && !s.IP.IsUnspecified() {
		if s.IP.IsLoopback() {
			return nil, ErrLoopback
		}
		iface, err := interfaceWith(s.IP)
		if err != nil {
			return nil, fmt.Errorf("advertise %s: %w", s.IP, err)
		}
		cfg.Ifaces = []string{iface}
		cfg.IPs = []net.IP{s.IP}
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = "Kiln updates on " + host
	}
	sv, err := dnssd.NewService(cfg)
	if err != nil {
		return nil, fmt.Errorf("advertise: %w", err)
	}
	rp, err := dnssd.NewResponder()
	if err != nil {
		return nil, fmt.Errorf("advertise: %w", err)
	}
	if _, err := rp.Add(sv); err != nil {
		return nil, fmt.Errorf("advertise: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rp.Respond(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

func interfaceWith(ip net.IP) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface has address %s", ip)
}

// Found is a server found by Browse.
type Found struct {
	Name        string
	URL         string
	Protocol    string
	Fingerprint string
}

// Browse looks for update servers for up to timeout and returns the first whose protocol
// version matches and, when fingerprint is not empty, whose trust root fingerprint shares a key
// with it.
func Browse(ctx context.Context, fingerprint string, timeout time.Duration) (*Found, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var got *Found
		incomplete := false
		sub, stop := context.WithCancel(ctx)
		add := func(e dnssd.BrowseEntry) {
			if got != nil {
				return
			}
			if len(e.Text) == 0 {
				// Seen from a probe or announcement before its TXT record: ask again.
				incomplete = true
				stop()
				return
			}
			if got = match(e, fingerprint); got != nil {
				stop()
			}
		}
		err := dnssd.LookupType(sub, ota.ServiceType+".local.", add, func(dnssd.BrowseEntry) {})
		stop()
		switch {
		case got != nil:
			return got, nil
		case ctx.Err() != nil:
			return nil, ErrNotFound
		case incomplete:
			select {
			case <-ctx.Done():
				return nil, ErrNotFound
			case <-time.After(300 * time.Millisecond):
			}
		case err != nil:
			return nil, fmt.Errorf("browse %s: %w", ota.ServiceType, err)
		default:
			return nil, ErrNotFound
		}
	}
}

// match reads a browse entry (what a LAN host says about itself, untrusted): the server it
// names if its TXT record has this protocol version and a root fingerprint sharing a key with
// fingerprint, and it has an address and a port; else nil.
func match(e dnssd.BrowseEntry, fingerprint string) *Found {
	if e.Text["v"] != ota.ProtocolVersion || !sameRoot(fingerprint, e.Text["fp"]) || e.Port <= 0 || e.Port > 65535 {
		return nil
	}
	var ip net.IP
	for _, c := range e.IPs {
		if len(c) != net.IPv4len && len(c) != net.IPv6len {
			continue
		}
		if c.To4() != nil { // prefer IPv4: no zone needed
			ip = c
			break
		}
		if ip == nil {
			ip = c
		}
	}
	if ip == nil {
		return nil
	}
	host := ip.String()
	if ip.To4() == nil && ip.IsLinkLocalUnicast() && validZone(e.IfaceName) {
		host += "%" + e.IfaceName
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(e.Port))}
	return &Found{Name: e.Name, URL: u.String(), Protocol: e.Text["v"], Fingerprint: e.Text["fp"]}
}

// validZone reports whether name can be an IPv6 zone (an interface name) in a URL.
func validZone(name string) bool {
	if name == "" || len(name) > 15 { // IFNAMSIZ-1
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// sameRoot reports whether fingerprints want and got (comma-separated key IDs) share a key;
// an empty want matches any.
func sameRoot(want, got string) bool {
	if want == "" {
		return true
	}
	if len(got) > maxFingerprint {
		return false
	}
	for _, w := range strings.Split(want, ",") {
		for _, g := range strings.Split(got, ",") {
			if w != "" && w == g {
				return true
			}
		}
	}
	return false
}
