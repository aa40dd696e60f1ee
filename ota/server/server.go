// Package server is the LAN update server: it serves a repository directory (GET/HEAD with
// ranges and ETags), answers devices' /v1/check and /v1/report, keeps a device table, and
// advertises itself with DNS-SD. The same Server runs behind `kiln serve` and the GUI's toggle.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/discovery"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/repo"
)

// Limits and timeouts.
const (
	maxCheckBody   = 16 << 10
	maxReportBody  = 16 << 10
	maxHeaderBytes = 16 << 10
	apiTimeout     = 30 * time.Second
	// minRate is the slowest download the server waits for before dropping a connection.
	minRate = 64 << 10
)

// ErrRunning / ErrNotRunning: Start on a running server, Stop on a stopped one.
var (
	ErrRunning    = errors.New("update server already running")
	ErrNotRunning = errors.New("update server not running")
)

// Config configures a Server.
type Config struct {
	// Repo is the repository directory (made by kiln publish).
	Repo string
	// Addr is host:port to listen on; the server binds only there. ":0" picks a port.
	Addr string
	// Advertise announces the server with DNS-SD on the interface of Addr's host.
	Advertise bool
	// Name is the DNS-SD instance name (default "Kiln updates on <hostname>").
	Name string
	// Keys re-sign the repository's timestamp before it expires; with OwnerKeys the server
	// loads the owner's keys (repo.DefaultKeyDir) instead. SigningError says when neither works.
	Keys      *repo.Keys
	OwnerKeys bool
	// PollInterval, when set, is the check interval the server asks devices to use.
	PollInterval time.Duration
	// MaxDevices bounds the device table (default 4096); the least recently seen go first.
	MaxDevices int
	// Store, when set, keeps the device table, the pinned keys and each device's history
	// across restarts (fleet.Open). The caller closes it after Stop.
	Store fleet.Store
	// Proxies are the reverse proxies (load balancers) in front of the server: a request from
	// one of them comes from the address in its X-Real-IP header, for the new-device budget,
	// the device table and the owner-only requests.
	Proxies []netip.Prefix
	Log     *logrus.Logger
	// OnChange is called (from a server goroutine) after the device table changed.
	OnChange func()
}

// Server is an update server. The zero value is not usable; call New.
type Server struct {
	cfg  Config
	log  *logrus.Logger
	fs   *repoFS
	devs *deviceTable

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	stopAdv  func()
	cancel   context.CancelFunc
	done     chan error
	serveErr error
	keys     *repo.Keys

	signMu  sync.Mutex
	signErr error // why the timestamp is not re-signed (nil: it is)
}

// New checks the repository and returns a stopped server.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("update server: no listen address (give HOST:PORT, e.g. 192.168.1.10:8080)")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("update server: listen address %q: %w", cfg.Addr, err)
	}
	log := cfg.Log
	if log == nil {
		log = logrus.New()
		log.SetLevel(logrus.WarnLevel)
	}
	fsys, err := openRepoFS(cfg.Repo)
	if err != nil {
		return nil, err
	}
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = 4096
	}
	s := &Server{cfg: cfg, log: log, fs: fsys, devs: newDeviceTable(cfg.MaxDevices)}
	if cfg.Store != nil {
		if err := s.devs.load(cfg.Store); err != nil {
			return nil, fmt.Errorf("update server: load devices: %w", err)
		}
	}
	s.keys, s.signErr = signingKeys(cfg, fsys.rootJSON())
	return s, nil
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/", s.serveFile)
	mux.HandleFunc("HEAD /metadata/", s.serveFile)
	mux.HandleFunc("GET /targets/", s.serveFile)
	mux.HandleFunc("HEAD /targets/", s.serveFile)
	mux.HandleFunc("GET /images/", s.serveFile)
	mux.HandleFunc("HEAD /images/", s.serveFile)
	mux.HandleFunc("GET /catalog.json", s.serveCatalog)
	mux.HandleFunc("POST /v1/check", s.check)
	mux.HandleFunc("POST /v1/report", s.report)
	mux.HandleFunc("GET /v1/devices", s.devices)
	mux.HandleFunc("GET /v1/info", s.info)
	mux.HandleFunc("GET /{$}", s.info)
	if len(s.cfg.Proxies) == 0 {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr, ok := s.forwardedFor(r); ok {
			r.RemoteAddr = addr
		} else if s.fromProxy(r) {
			httpError(w, http.StatusBadRequest, "request through the proxy without X-Real-IP (set proxy_set_header X-Real-IP $remote_addr)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// fromProxy reports whether r comes from one of the configured proxies.
func (s *Server) fromProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	for _, p := range s.cfg.Proxies {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// forwardedFor returns the client address a proxy names in X-Real-IP.
func (s *Server) forwardedFor(r *http.Request) (string, bool) {
	if !s.fromProxy(r) {
		return "", false
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP")))
	if err != nil {
		return "", false
	}
	return netip.AddrPortFrom(ip.Unmap(), 0).String(), true
}

// Start listens on the configured address and serves in the background until Stop or ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return ErrRunning
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("update server: listen on %s: %w (pick another port or address)", s.cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       apiTimeout,
		WriteTimeout:      apiTimeout, // downloads extend their own deadline by size
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          nil,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.srv, s.ln, s.cancel, s.done = srv, ln, cancel, make(chan error, 1)
	go func() { s.done <- srv.Serve(ln) }()
	go s.refreshLoop(ctx)
	if s.cfg.Advertise {
		tcp := ln.Addr().(*net.TCPAddr)
		fp, _ := repo.Fingerprint(s.fs.rootJSON())
		stop, err := discovery.Advertise(ctx, discovery.Service{Name: s.cfg.Name, IP: tcp.IP, Port: tcp.Port, Fingerprint: fp})
		switch {
		case errors.Is(err, discovery.ErrLoopback):
			s.log.Info(err)
		case err != nil:
			s.log.WithError(err).Warn("update server: DNS-SD advertisement failed; devices need the server URL in their recipe")
		default:
			s.stopAdv = stop
		}
	}
	s.log.WithField("addr", ln.Addr().String()).Info("update server listening")
	return nil
}

// refreshLoop re-signs the timestamp when it is half-way to expiry, if the keys are at hand.
func (s *Server) refreshLoop(ctx context.Context) {
	if s.keys == nil {
		s.log.Warn("update server: ", s.signErr)
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ok, err := repo.Refresh(s.cfg.Repo, s.keys, false, repo.Options{})
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %w", ErrNotResigning, err)
			s.log.WithError(err).Warn("update server: refresh timestamp")
		case ok:
			s.log.Info("update server: re-signed timestamp")
		}
		s.setSigningError(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Addr is the address the server listens on (nil when stopped).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL is the server's base URL, e.g. "http://192.168.1.10:8080" ("" when stopped).
func (s *Server) URL() string {
	if a := s.Addr(); a != nil {
		return "http://" + a.String()
	}
	return ""
}

// Running reports whether the server is serving.
func (s *Server) Running() bool { return s.Addr() != nil }

// Stop stops advertising, stops accepting connections and waits (until ctx ends) for
// transfers in progress; then it closes whatever is left.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ErrNotRunning
	}
	if s.stopAdv != nil {
		s.stopAdv()
		s.stopAdv = nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.cancel()
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	s.srv, s.ln = nil, nil
	if err != nil {
		return fmt.Errorf("stop update server: %w", err)
	}
	return nil
}

// Devices returns the device table, most recently seen first.
func (s *Server) Devices() []ota.DeviceStatus { return s.devs.list() }

// History returns up to limit of device id's history events, newest first (none without a
// Config.Store).
func (s *Server) History(ctx context.Context, id string, limit int) ([]fleet.Event, error) {
	if s.cfg.Store == nil {
		return nil, nil
	}
	return s.cfg.Store.History(ctx, id, limit)
}

func (s *Server) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// info names the service, its protocol and root key; the host name only to the owner.
func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	fp, _ := repo.Fingerprint(s.fs.rootJSON())
	out := map[string]string{"service": "kiln-ota", "protocol": ota.ProtocolVersion, "fingerprint": fp}
	if fromOwner(r) {
		out["host"], _ = os.Hostname()
	}
	writeJSON(w, http.StatusOK, out)
}

// fromOwner reports whether r comes from this machine (loopback): the owner's app and CLI.
func fromOwner(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// readSigned reads a JSON body of at most limit bytes into v, checks dev (part of v) and the
// request's signature by dev's key, and answers the request itself when something is wrong.
// With unsigned, a request without key and signature (an agent older than device keys) passes
// with a zero Signature.
func (s *Server) readSigned(w http.ResponseWriter, r *http.Request, limit int64, v any, dev *ota.Device, unsigned bool) (ota.Signature, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(limit, 10)+" bytes")
		} else {
			httpError(w, http.StatusBadRequest, "read body: "+err.Error())
		}
		return ota.Signature{}, false
	}
	if err := json.Unmarshal(body, v); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return ota.Signature{}, false
	}
	if msg := validDevice(dev); msg != "" {
		httpError(w, http.StatusBadRequest, msg)
		return ota.Signature{}, false
	}
	if unsigned && dev.Key == "" && r.Header.Get(ota.SignatureHeader) == "" {
		return ota.Signature{}, true
	}
	pub, err := ota.ParseKey(dev.Key)
	if err != nil {
		httpError(w, http.StatusUnauthorized, err.Error()+" (update the device's kiln-agent)")
		return ota.Signature{}, false
	}
	if dev.ID != ota.DeviceID(dev.Name, pub) {
		httpError(w, http.StatusForbidden, "device id "+strconv.Quote(dev.ID)+" does not belong to the key it sent")
		return ota.Signature{}, false
	}
	sig, err := ota.ParseSignature(r.Header.Get(ota.SignatureHeader))
	if err == nil {
		err = sig.Verify(pub, r.URL.Path, body, time.Now())
	}
	if err != nil {
		httpError(w, http.StatusUnauthorized, err.Error())
		return ota.Signature{}, false
	}
	return sig, true
}

// tableError answers a request the device table refused or could not record.
func (s *Server) tableError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errKeyMismatch):
		code = http.StatusForbidden
	case errors.Is(err, errReplay):
		code = http.StatusConflict
	case errors.Is(err, errBusy), errors.Is(err, errRateLimited):
		code = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(int(newIDEvery/time.Second)))
	case errors.Is(err, errTableFull):
		code = http.StatusServiceUnavailable
	default:
		// The store failed: the owner reads why in the log, the device retries later.
		s.log.WithError(err).Error("update server: record device")
		httpError(w, http.StatusServiceUnavailable, "the server could not record this device; try again later")
		return
	}
	httpError(w, code, err.Error())
}

// Field limits of checks and reports.
const (
	maxField   = 128 // id, name, arch, board, channel, sha256
	maxVersion = 64  // version, target and each skipped version
	maxSkip    = 64
	maxMessage = 1024
)

// validDevice returns what is wrong with d, or "".
func validDevice(d *ota.Device) string {
	if d.ID == "" || len(d.ID) > maxField {
		return fmt.Sprintf("id must be 1-%d characters", maxField)
	}
	if len(d.Version) > maxVersion {
		return fmt.Sprintf("version is %d characters; at most %d are allowed", len(d.Version), maxVersion)
	}
	if _, err := ota.CompareVersions(d.Version, d.Version); err != nil {
		return err.Error()
	}
	for _, f := range []string{d.Name, d.Arch, d.Board, d.Channel, d.SHA256, d.Key} {
		if len(f) > maxField {
			return fmt.Sprintf("fields are limited to %d characters", maxField)
		}
	}
	if len(d.Skip) > maxSkip {
		return fmt.Sprintf("skip lists at most %d versions", maxSkip)
	}
	for _, v := range d.Skip {
		if len(v) > maxVersion {
			return fmt.Sprintf("skipped versions are limited to %d characters", maxVersion)
		}
	}
	return ""
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	var req ota.CheckRequest
	// An unsigned check (an older agent) is answered, so that the device can update to an
	// agent that signs, but does not enter the device table.
	sig, ok := s.readSigned(w, r, maxCheckBody, &req, &req.Device, true)
	if !ok {
		return
	}
	targets, err := s.fs.targets()
	if err != nil {
		s.log.WithError(err).Error("update server: read repository")
		httpError(w, http.StatusServiceUnavailable, "repository unreadable: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	held, err := s.withhold(ctx, targets, &req.Device)
	cancel()
	if err != nil {
		s.log.WithError(err).Error("update server: read rollouts")
		httpError(w, http.StatusServiceUnavailable, "the server could not read its rollouts; try again later")
		return
	}
	sel, err := ota.Select(held.targets, req.Device)
	if held.why != "" {
		if errors.Is(err, ota.ErrNoUpdate) || errors.Is(err, ota.ErrNoPath) {
			sel.Message = held.why
		} else {
			sel.Message += "; " + held.why
		}
	}
	resp := ota.CheckResponse{Message: sel.Message, Interval: int(s.cfg.PollInterval / time.Second), Channel: held.channel}
	if sel.Newest != nil {
		resp.Newest = sel.Newest.Version
	}
	switch {
	case err == nil:
		resp.Update = true
		resp.Target = info(sel.Target)
		if sel.Delta != nil {
			resp.Delta = info(sel.Delta)
		}
	case errors.Is(err, ota.ErrNoUpdate), errors.Is(err, ota.ErrNoPath):
	default:
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	offered := ""
	if resp.Target != nil {
		offered = resp.Target.Version
	}
	if sig.Nonce != "" {
		if err := s.devs.seen(req.Device, sig, r.RemoteAddr, offered, sel.Message); err != nil {
			s.tableError(w, err)
			return
		}
		s.changed()
	}
	s.log.WithFields(logrus.Fields{"device": req.ID, "version": req.Version, "offer": offered, "signed": sig.Nonce != ""}).Debug(sel.Message)
	writeJSON(w, http.StatusOK, resp)
}

func info(t *ota.Target) *ota.TargetInfo {
	return &ota.TargetInfo{Path: t.Path, URL: "/" + ota.TargetFile(t.Path, t.SHA256), Version: t.Version, Size: t.Size, SHA256: t.SHA256}
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	var rep ota.Report
	sig, ok := s.readSigned(w, r, maxReportBody, &rep, &rep.Device, false)
	if !ok {
		return
	}
	if !ota.ValidState(rep.State) {
		httpError(w, http.StatusBadRequest, "unknown state "+strconv.Quote(rep.State))
		return
	}
	if len(rep.Target) > maxVersion {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("target is limited to %d characters", maxVersion))
		return
	}
	if len(rep.Message) > maxMessage {
		rep.Message = strings.ToValidUTF8(rep.Message[:maxMessage], "")
	}
	if err := s.devs.report(rep, sig, r.RemoteAddr); err != nil {
		s.tableError(w, err)
		return
	}
	s.log.WithFields(logrus.Fields{"device": rep.ID, "version": rep.Version, "state": rep.State, "target": rep.Target}).Info(rep.Message)
	if rep.State == ota.StateRolledBack && s.cfg.Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		if ro, err := s.cfg.Store.Rollout(ctx, rep.Target); err == nil && ro.Paused {
			s.log.WithField("version", ro.Version).Warn("update server: " + ro.Reason)
		}
		cancel()
	}
	s.changed()
	w.WriteHeader(http.StatusNoContent)
}

// devices serves the device table to the owner only: device IDs and addresses are not the
// LAN's business.
func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	if !fromOwner(r) {
		httpError(w, http.StatusForbidden, "the device table is served to this machine only (use the Kiln app or kiln on the server)")
		return
	}
	writeJSON(w, http.StatusOK, s.devs.list())
}
