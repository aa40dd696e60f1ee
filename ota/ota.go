// Package ota holds what the update server and the device agent share: the update bundle and
// target descriptions, the check/report protocol, version ordering and target selection.
//
// Subpackages: ota/repo (keys, signed TUF repository, publishing), ota/server (the LAN server),
// ota/discovery (DNS-SD), ota/agent (the device side: verify, download, install, boot assessment)
// and ota/delta (binary deltas between payloads).
package ota

import (
	"errors"
	"time"

	"github.com/kilnproject/kiln/internal/semver"
)

// ProtocolVersion is the version of the /v1 check/report protocol, advertised in DNS-SD TXT "v".
const ProtocolVersion = "1"

// ServiceType is the DNS-SD service type under which update servers advertise themselves.
const ServiceType = "_kiln-ota._tcp"

// Sentinel errors a front end or the agent branches on.
var (
	// ErrNoUpdate: the device already runs the newest version it may install.
	ErrNoUpdate = errors.New("no update available")
	// ErrNoPath: newer versions exist but none accepts the device's version, not even as a
	// stepping stone; the device must be reflashed.
	ErrNoPath = errors.New("no update path from this version")
	// ErrBadVersion: a version string is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD]).
	ErrBadVersion = semver.ErrInvalid
)

// Kinds of target.
const (
	KindFull  = "full"  // a complete UKI
	KindDelta = "delta" // a zstd patch against the UKI (or the root) of version From
	KindRoot  = "root"  // a root filesystem image, named by the full target that mounts it
)

// Target is one signed target of the repository, with the custom fields Kiln puts into the TUF
// targets metadata ("custom": {"kiln": {...}}).
type Target struct {
	Path    string `json:"-"` // TUF target path, e.g. "kiln-tiny/1.1.0/kiln-tiny-1.1.0.efi"
	Size    int64  `json:"-"`
	SHA256  string `json:"-"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Board   string `json:"board,omitempty"`
	Channel string `json:"channel,omitempty"`
	MinFrom string `json:"min_from,omitempty"`
	MaxFrom string `json:"max_from,omitempty"`
	// HealthCheck is the new version's health check, informational (the image carries its own).
	HealthCheck string `json:"health_check,omitempty"`
	// For deltas: the version and sha256 of the UKI the patch applies to, and the full target
	// (path, size, sha256 of the result).
	From       string `json:"from,omitempty"`
	FromSHA256 string `json:"from_sha256,omitempty"`
	Full       string `json:"full,omitempty"`
	FullSize   int64  `json:"full_size,omitempty"`
	FullSHA256 string `json:"full_sha256,omitempty"`
	// For a package image's UKI: the root filesystem target it mounts (path, size, sha256),
	// installed into the spare root slot before the UKI.
	Root       string `json:"root,omitempty"`
	RootSize   int64  `json:"root_size,omitempty"`
	RootSHA256 string `json:"root_sha256,omitempty"`
}

// Device describes a device for target selection (what it sends to /v1/check).
type Device struct {
	// ID is DeviceID(Name, the device's public key); Key is that key (KeyString). The request's
	// SignatureHeader proves the sender holds the private key.
	ID      string `json:"id"`
	Key     string `json:"key,omitempty"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Board   string `json:"board,omitempty"`
	Channel string `json:"channel,omitempty"`
	// SHA256 of the running UKI, so that a delta against it can be offered.
	SHA256 string `json:"sha256,omitempty"`
	// Skip lists versions that failed on this device (never became healthy): they are not
	// offered again.
	Skip []string `json:"skip,omitempty"`
}

// CheckRequest is the body of POST /v1/check.
type CheckRequest struct {
	Device
}

// CheckResponse is the answer to /v1/check.
type CheckResponse struct {
	// Update is false when there is nothing to install; Message says why.
	Update bool `json:"update"`
	// Target is the full target to install; Delta, when set, a smaller patch producing it.
	Target *TargetInfo `json:"target,omitempty"`
	Delta  *TargetInfo `json:"delta,omitempty"`
	// Newest is the newest version of the device's line; it differs from Target.Version when
	// Target is a stepping stone.
	Newest  string `json:"newest,omitempty"`
	Message string `json:"message"`
	// Interval, when set, is how many seconds the device should wait before its next check.
	Interval int `json:"interval,omitempty"`
	// Channel, when set, is the channel the owner moved the device to: the device picks its
	// update among that channel's signed targets.
	Channel string `json:"channel,omitempty"`
}

// TargetInfo is a target as the check response names it: where to fetch it and what it is.
type TargetInfo struct {
	Path    string `json:"path"`
	URL     string `json:"url"` // relative to the server, e.g. "/targets/<sha256>.<file>"
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Device states reported to /v1/report.
const (
	StateChecking    = "checking"
	StateDownloading = "downloading"
	StateInstalled   = "installed"
	StateBooted      = "booted"
	StateHealthy     = "healthy"
	StateUnhealthy   = "unhealthy"
	StateRolledBack  = "rolled-back"
	StateFailed      = "failed"
)

// ValidState reports whether s is a state a device may report.
func ValidState(s string) bool {
	switch s {
	case StateChecking, StateDownloading, StateInstalled, StateBooted, StateHealthy,
		StateUnhealthy, StateRolledBack, StateFailed:
		return true
	}
	return false
}

// Report is the body of POST /v1/report.
type Report struct {
	Device
	State string `json:"state"`
	// Target is the version being installed or the one that failed.
	Target  string `json:"target,omitempty"`
	Message string `json:"message,omitempty"`
	Done    int64  `json:"done,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// DeviceStatus is one row of the server's device table.
type DeviceStatus struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Board    string    `json:"board,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	State    string    `json:"state"`
	Target   string    `json:"target,omitempty"`
	Offered  string    `json:"offered,omitempty"`
	Message  string    `json:"message,omitempty"`
	Addr     string    `json:"addr"`
	LastSeen time.Time `json:"last_seen"`
}

// TargetFile is where a target's payload lives in a repository, relative to its root: TUF's
// consistent-snapshot name "targets/<sha256>.<path>", so a payload's name changes with its
// content and caches never serve stale bytes.
func TargetFile(path, sha256Hex string) string {
	return "targets/" + sha256Hex + "." + path
}
