package fleet

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kilnproject/kiln/ota"
)

// Shares of devices are in basis points: 10000 is every device, 1000 is 10%.
const (
	AllDevices = 10000
	// DefaultMaxFailures: a rollout pauses itself when more than this share of the devices that
	// installed the version rolled back ...
	DefaultMaxFailures = 2000
	// DefaultMinDevices: ... once at least this many devices installed it.
	DefaultMinDevices = 1
)

// Rollout is how far a published version is offered. A version without a stored rollout is
// offered to every device, and pauses itself like one at 100%.
type Rollout struct {
	Version string `json:"version"`
	// Share of devices offered the version (basis points), chosen by Selected.
	Share int `json:"share"`
	// Paused: no device is offered the version; Reason says who paused it and why.
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
	// MaxFailures (basis points) and MinDevices set the automatic pause.
	MaxFailures int `json:"max_failures"`
	MinDevices  int `json:"min_devices"`
	// Tried counts the devices that installed (or run) the version, RolledBack those of them
	// that went back to their previous version.
	Tried      int       `json:"tried"`
	RolledBack int       `json:"rolled_back"`
	Updated    time.Time `json:"updated"`
}

// NewRollout is a rollout of version to share with the default automatic pause.
func NewRollout(version string, share int) Rollout {
	return Rollout{Version: version, Share: share, MaxFailures: DefaultMaxFailures, MinDevices: DefaultMinDevices}
}

// Status describes the rollout in a few words, e.g. "10% of devices", "paused: …".
func (r Rollout) Status() string {
	s := FormatShare(r.Share) + " of devices"
	if r.Paused {
		s = "paused (was " + s + "): " + r.Reason
	}
	if r.Tried > 0 {
		s += fmt.Sprintf("; %d installed it, %d rolled back", r.Tried, r.RolledBack)
	}
	return s
}

// shouldPause reports whether the rollback counts call for the automatic pause.
func (r Rollout) shouldPause() bool {
	return !r.Paused && r.RolledBack > 0 && r.Tried >= max(r.MinDevices, 1) &&
		r.RolledBack*AllDevices > r.MaxFailures*r.Tried
}

// autoReason is the Reason of an automatic pause.
func (r Rollout) autoReason() string {
	return fmt.Sprintf("paused automatically: %d of %d devices that installed %s rolled back (more than %s); "+
		"publish a fixed version, or kiln rollout %s resume", r.RolledBack, r.Tried, r.Version, FormatShare(r.MaxFailures), r.Version)
}

// Selected reports whether device id is among the share (basis points) of devices offered
// version. The choice is stable: a device selected at some share stays selected at every
// larger share, so raising a rollout only adds devices. Each version picks its own devices.
func Selected(id, version string, share int) bool {
	return Bucket(id, version) < share
}

// Bucket is the device's place (0–9999) in the rollout of version: it is selected while the
// share exceeds it.
func Bucket(id, version string) int {
	h := sha256.Sum256([]byte(version + "\x00" + id))
	return int(binary.BigEndian.Uint64(h[:8]) % AllDevices)
}

// ParseShare reads a share of devices such as "10%", "12.5%" or "100" into basis points.
func ParseShare(s string) (int, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, fmt.Errorf("share %q: give a percentage from 0%% to 100%%, e.g. 10%%", s)
	}
	return int(math.Round(f * 100)), nil
}

// FormatShare writes basis points as a percentage: "10%", "12.5%".
func FormatShare(bp int) string {
	return strconv.FormatFloat(float64(bp)/100, 'f', -1, 64) + "%"
}

// Policy is what the owner set for one device: a version it is held on (nothing newer is
// offered) and the channel it follows instead of its image's.
type Policy struct {
	ID      string `json:"id"`
	Hold    string `json:"hold,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// ErrNoRollout: the version has no stored rollout.
var ErrNoRollout = errors.New("no rollout of this version")

// outcome is what a reported state says about the version the device tried ("" for nothing).
func outcome(state string) string {
	switch state {
	case ota.StateInstalled, ota.StateBooted, ota.StateUnhealthy:
		return "trying"
	case ota.StateHealthy:
		return "healthy"
	case ota.StateRolledBack:
		return "rolled-back"
	}
	return ""
}

// validRollout checks a rollout's fields.
func validRollout(r Rollout) error {
	if err := ota.CheckVersion(r.Version); err != nil {
		return fmt.Errorf("rollout of %q: %w", r.Version, err)
	}
	if r.Share < 0 || r.Share > AllDevices || r.MaxFailures < 0 || r.MaxFailures > AllDevices {
		return fmt.Errorf("rollout of %s: shares are from 0%% to 100%%", r.Version)
	}
	if r.MinDevices < 1 {
		return fmt.Errorf("rollout of %s: the automatic pause needs at least 1 device", r.Version)
	}
	return nil
}

// validPolicy checks a policy's fields.
func validPolicy(p Policy) error {
	if p.ID == "" {
		return errors.New("no device id")
	}
	if p.Hold != "" {
		if err := ota.CheckVersion(p.Hold); err != nil {
			return fmt.Errorf("hold %s on %q: %w", p.ID, p.Hold, err)
		}
	}
	if len(p.Channel) > 64 || strings.ContainsAny(p.Channel, " \t\n") {
		return fmt.Errorf("channel %q: a short word such as stable or beta", p.Channel)
	}
	return nil
}
