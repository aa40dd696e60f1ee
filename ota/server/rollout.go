package server

import (
	"context"
	"fmt"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
)

// withheld is what the owner's rollouts and settings keep from a device for now.
type withheld struct {
	targets []ota.Target // the targets the device may be offered
	channel string       // the channel the owner moved the device to ("" to keep its own)
	why     string       // why the newest version held back is not offered ("" if none is)
}

// withhold applies the stored rollouts, the device's hold and its channel to targets. d's
// channel becomes the one the owner set. Without a store every device gets every version.
func (s *Server) withhold(ctx context.Context, targets []ota.Target, d *ota.Device) (withheld, error) {
	w := withheld{targets: targets}
	if s.cfg.Store == nil {
		return w, nil
	}
	pol, err := s.cfg.Store.Policy(ctx, d.ID)
	if err != nil {
		return w, err
	}
	if pol.Channel != "" {
		d.Channel, w.channel = pol.Channel, pol.Channel
	}
	list, err := s.cfg.Store.Rollouts(ctx)
	if err != nil {
		return w, err
	}
	rollouts := make(map[string]fleet.Rollout, len(list))
	for _, r := range list {
		rollouts[r.Version] = r
	}
	w.targets = make([]ota.Target, 0, len(targets))
	newest := d.Version
	for _, t := range targets {
		why := ""
		if t.Kind == ota.KindFull {
			r, staged := rollouts[t.Version]
			switch {
			case pol.Hold != "" && newer(t.Version, pol.Hold):
				why = fmt.Sprintf("this device is held on %s by the owner (kiln rollout release %s)", pol.Hold, d.ID)
			case staged && r.Paused:
				why = fmt.Sprintf("the rollout of %s is %s", t.Version, r.Reason)
			case staged && !fleet.Selected(d.ID, t.Version, r.Share):
				why = fmt.Sprintf("%s is rolled out to %s of devices; this one is not among them yet", t.Version, fleet.FormatShare(r.Share))
			}
		}
		if why == "" {
			w.targets = append(w.targets, t)
			continue
		}
		if (d.Name == "" || t.Name == d.Name) && newer(t.Version, newest) {
			newest, w.why = t.Version, why
		}
	}
	return w, nil
}

// newer reports whether version a is newer than b (false when either is malformed).
func newer(a, b string) bool {
	c, err := ota.CompareVersions(a, b)
	return err == nil && c > 0
}

// Rollouts returns the stored rollouts (none without a Config.Store).
func (s *Server) Rollouts(ctx context.Context) ([]fleet.Rollout, error) {
	if s.cfg.Store == nil {
		return nil, nil
	}
	return s.cfg.Store.Rollouts(ctx)
}
