package ota

import (
	"fmt"
	"sort"
)

// Selection is the outcome of Select.
type Selection struct {
	// Target is the full target to install next (nil with ErrNoUpdate or ErrNoPath).
	Target *Target
	// Delta is a patch producing Target from the device's running UKI, when one exists and is
	// smaller than Target.
	Delta *Target
	// Root is the root filesystem Target mounts (package images), RootDelta a smaller patch
	// producing it from the root of the version the device runs.
	Root      *Target
	RootDelta *Target
	// Newest is the newest version the device's line has; Target is a stepping stone when it
	// differs.
	Newest *Target
	// Message explains the outcome to a person, on the server and on the device.
	Message string
}

func channelOf(c string) string {
	if c == "" {
		return "stable"
	}
	return c
}

// matches reports whether t is meant for devices like d: same product, arch, board and channel.
// An empty arch or board, on either side, matches nothing: a device sees only updates built for
// its own hardware (see boardOf for devices whose images predate board names).
func matches(t *Target, d Device) bool {
	return (d.Name == "" || t.Name == d.Name) &&
		t.Arch != "" && t.Arch == d.Arch &&
		t.Board != "" && t.Board == d.Board &&
		channelOf(t.Channel) == channelOf(d.Channel)
}

// Select picks the update for device d among targets: the newest full target of d's line whose
// compatible range holds d's version. When the newest version does not accept d's version, the
// newest one that does is offered as a stepping stone and Message says so. It returns
// ErrNoUpdate when d runs the newest version, ErrNoPath when nothing newer accepts d's version.
func Select(targets []Target, d Device) (Selection, error) {
	cur, err := parseVersion(d.Version)
	if err != nil {
		return Selection{}, fmt.Errorf("select update for %s: device version: %w", d.Name, err)
	}
	d.Board = boardOf(targets, d)
	type cand struct {
		t *Target
		v version
	}
	var newer []cand
	var skipped []string
	for i := range targets {
		t := &targets[i]
		if t.Kind != KindFull || !matches(t, d) {
			continue
		}
		v, err := parseVersion(t.Version)
		if err != nil || v.Compare(cur) <= 0 {
			continue
		}
		if contains(d.Skip, t.Version) {
			skipped = append(skipped, t.Version)
			continue
		}
		newer = append(newer, cand{t, v})
	}
	if len(newer) == 0 && len(skipped) > 0 {
		return Selection{Message: fmt.Sprintf("%s %s stays: %s did not become healthy on this device; it waits for a newer version", d.Name, d.Version, skipped[0])}, ErrNoUpdate
	}
	if len(newer) == 0 {
		return Selection{Message: fmt.Sprintf("%s %s is the newest version on channel %s", d.Name, d.Version, channelOf(d.Channel))}, ErrNoUpdate
	}
	sort.SliceStable(newer, func(i, j int) bool { return newer[i].v.Compare(newer[j].v) > 0 })
	newest := newer[0].t
	sel := Selection{Newest: newest}
	for _, c := range newer {
		ok, err := InRange(d.Version, c.t.MinFrom, c.t.MaxFrom, c.t.Version)
		if err == nil && ok {
			sel.Target = c.t
			break
		}
	}
	need := fmt.Sprintf("update %s needs a device on %s; this device runs %s", newest.Version,
		RangeText(newest.MinFrom, newest.MaxFrom, newest.Version), d.Version)
	switch {
	case sel.Target == nil:
		sel.Message = need + " — no published version leads there: publish a stepping stone or reflash the device"
		return sel, ErrNoPath
	case sel.Target != newest:
		sel.Message = need + " — it will first be offered " + sel.Target.Version
	default:
		sel.Message = fmt.Sprintf("update %s is available (this device runs %s)", newest.Version, d.Version)
	}
	sel.Delta = bestDelta(targets, sel.Target, d)
	if sel.Target.Root != "" {
		if sel.Root = rootOf(targets, sel.Target); sel.Root == nil {
			return Selection{Message: fmt.Sprintf("update %s names root filesystem %s, which the repository does not list: publish it again", sel.Target.Version, sel.Target.Root)}, ErrNoPath
		}
		sel.RootDelta = bestDelta(targets, sel.Root, Device{Version: d.Version})
	}
	return sel, nil
}

// rootOf returns the root target full names, checked against what full says of it.
func rootOf(targets []Target, full *Target) *Target {
	for i := range targets {
		t := &targets[i]
		if t.Kind == KindRoot && t.Path == full.Root && t.SHA256 == full.RootSHA256 && t.Size == full.RootSize &&
			t.Name == full.Name && t.Version == full.Version {
			return t
		}
	}
	return nil
}

// RunningRoot returns the root target of the version d runs, when its image has one.
func RunningRoot(targets []Target, d Device) *Target {
	for i := range targets {
		t := &targets[i]
		if t.Kind == KindFull && t.Root != "" && t.Name == d.Name && t.Version == d.Version && matches(t, d) {
			return rootOf(targets, t)
		}
	}
	return nil
}

// boardOf returns d's board. Images built before boards were named report none; such a device
// is known by the UKI it runs: the board of the published full target with that payload (same
// product and arch), when exactly one board has it. Otherwise "", which matches nothing.
func boardOf(targets []Target, d Device) string {
	if d.Board != "" || d.SHA256 == "" {
		return d.Board
	}
	board := ""
	for i := range targets {
		t := &targets[i]
		if t.Kind != KindFull || t.SHA256 != d.SHA256 || t.Name != d.Name || t.Arch == "" || t.Arch != d.Arch || t.Board == "" {
			continue
		}
		if board != "" && board != t.Board {
			return ""
		}
		board = t.Board
	}
	return board
}

// bestDelta returns the smallest delta producing full from the payload device d runs, if
// smaller than full itself. A root delta's base is checked by the device, which reads it.
func bestDelta(targets []Target, full *Target, d Device) *Target {
	var best *Target
	for i := range targets {
		t := &targets[i]
		if t.Kind != KindDelta || t.Full != full.Path || t.Size >= full.Size || t.From != d.Version {
			continue
		}
		if d.SHA256 != "" && t.FromSHA256 != d.SHA256 {
			continue
		}
		if best == nil || t.Size < best.Size {
			best = t
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
