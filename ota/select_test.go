package ota

import (
	"errors"
	"testing"
)

func full(version, minFrom, maxFrom string, mods ...func(*Target)) Target {
	t := Target{Path: "tiny-" + version + ".efi", Size: 1000, SHA256: "s" + version, Kind: KindFull,
		Name: "tiny", Version: version, Arch: "x86_64", Board: "pc", Channel: "stable", MinFrom: minFrom, MaxFrom: maxFrom}
	for _, m := range mods {
		m(&t)
	}
	return t
}

func TestSelect(t *testing.T) {
	beta := func(t *Target) { t.Channel = "beta" }
	rpi := func(t *Target) { t.Board = "rpi4"; t.Arch = "aarch64"; t.Path = "rpi-" + t.Version }
	repo := []Target{
		full("1.0.0", "", ""),
		full("1.1.0", "1.0.0", ""),
		full("1.2.0", "1.0.0", "1.1.x"),
		full("2.0.0", "1.2.0", "1.2.0"),
		full("2.4.1", "2.0.0", ""),
		full("3.0.0", "2.0.0", "2.9.x"),
		full("3.1.0-rc.1", "3.0.0", "", beta),
		full("2.5.0", "0.0.0", "", rpi),
		full("2.5.0", "0.0.0", "", rpi, func(t *Target) { t.Board = "rpi3"; t.Path = "rpi3-2.5.0" }),
		// Targets without a board or arch are offered to nobody (else every test below would get them).
		full("4.0.0", "0.0.0", "", func(t *Target) { t.Board = "" }),
		full("4.0.1", "0.0.0", "", func(t *Target) { t.Arch = "" }),
		{Path: "tiny-1.1.0-to-1.2.0.patch", Size: 100, Kind: KindDelta, Name: "tiny", Version: "1.2.0",
			Arch: "x86_64", Board: "pc", Channel: "stable", From: "1.1.0", FromSHA256: "s1.1.0", Full: "tiny-1.2.0.efi"},
		{Path: "tiny-1.1.0-to-1.2.0.big.patch", Size: 5000, Kind: KindDelta, Name: "tiny", Version: "1.2.0",
			Arch: "x86_64", Board: "pc", Channel: "stable", From: "1.1.0", FromSHA256: "s1.1.0", Full: "tiny-1.2.0.efi"},
	}
	tests := []struct {
		name, version, board, arch, channel, sha string
		skip                                     []string
		want, newest, delta                      string
		err                                      error
		msg                                      string
	}{
		{name: "newest reachable directly", version: "2.4.1", want: "3.0.0", newest: "3.0.0",
			msg: "update 3.0.0 is available (this device runs 2.4.1)"},
		{name: "stepping stone when newest is out of range", version: "1.2.0", want: "2.0.0", newest: "3.0.0",
			msg: "update 3.0.0 needs a device on 2.0.0–2.9.x; this device runs 1.2.0 — it will first be offered 2.0.0"},
		{name: "stepping stone is the newest version in range", version: "2.0.0", want: "3.0.0", newest: "3.0.0"},
		{name: "old device takes the newest it may", version: "1.0.0", want: "1.2.0", newest: "3.0.0"},
		{name: "max_from wildcard excludes next minor", version: "1.1.5", want: "1.2.0", newest: "3.0.0"},
		{name: "below every min_from", version: "0.9.0", want: "1.0.0", newest: "3.0.0"},
		{name: "up to date", version: "3.0.0", err: ErrNoUpdate},
		{name: "newer than anything published", version: "9.0.0", err: ErrNoUpdate},
		{name: "beta channel sees only beta", version: "3.0.0", channel: "beta", want: "3.1.0-rc.1", newest: "3.1.0-rc.1"},
		{name: "beta channel without path", version: "2.4.1", channel: "beta", err: ErrNoPath, newest: "3.1.0-rc.1",
			msg: "update 3.1.0-rc.1 needs a device on 3.0.0 or later below 3.1.0-rc.1; this device runs 2.4.1 — no published version leads there: publish a stepping stone or reflash the device"},
		{name: "other board", version: "1.0.0", board: "rpi4", arch: "aarch64", want: "2.5.0", newest: "2.5.0"},
		{name: "other arch is never offered x86 builds", version: "2.5.0", board: "rpi4", arch: "aarch64", err: ErrNoUpdate},
		{name: "device without a board sees nothing", version: "1.0.0", board: "-", arch: "x86_64", err: ErrNoUpdate},
		{name: "device without an arch sees nothing", version: "1.0.0", board: "pc", arch: "-", err: ErrNoUpdate},
		{name: "device without a board is known by the published UKI it runs", version: "1.0.0", board: "-", arch: "x86_64", sha: "s1.0.0", want: "1.2.0", newest: "3.0.0"},
		{name: "device without a board running an unpublished UKI sees nothing", version: "1.0.0", board: "-", arch: "x86_64", sha: "unknown", err: ErrNoUpdate},
		{name: "a UKI published for two boards says nothing of the device's", version: "1.0.0", board: "-", arch: "aarch64", sha: "s2.5.0", err: ErrNoUpdate},
		{name: "delta against the running version, smallest", version: "1.1.0", sha: "s1.1.0", want: "1.2.0", newest: "3.0.0", delta: "tiny-1.1.0-to-1.2.0.patch"},
		{name: "no delta when the running UKI differs", version: "1.1.0", sha: "other", want: "1.2.0", newest: "3.0.0"},
		{name: "failed version is skipped", version: "2.4.1", skip: []string{"3.0.0"}, err: ErrNoUpdate,
			msg: "tiny 2.4.1 stays: 3.0.0 did not become healthy on this device; it waits for a newer version"},
		{name: "bad device version", version: "one", err: ErrBadVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Device{ID: "d", Name: "tiny", Version: tc.version, Arch: tc.arch, Board: tc.board, Channel: tc.channel, SHA256: tc.sha, Skip: tc.skip}
			if d.Board == "" {
				d.Board, d.Arch = "pc", "x86_64"
			}
			if d.Board == "-" {
				d.Board = ""
			}
			if d.Arch == "-" {
				d.Arch = ""
			}
			sel, err := Select(repo, d)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got := version0(sel.Target); got != tc.want {
				t.Errorf("target = %q, want %q (%s)", got, tc.want, sel.Message)
			}
			if got := version0(sel.Newest); got != tc.newest {
				t.Errorf("newest = %q, want %q", got, tc.newest)
			}
			gotDelta := ""
			if sel.Delta != nil {
				gotDelta = sel.Delta.Path
			}
			if gotDelta != tc.delta {
				t.Errorf("delta = %q, want %q", gotDelta, tc.delta)
			}
			if tc.msg != "" && sel.Message != tc.msg {
				t.Errorf("message = %q\nwant      %q", sel.Message, tc.msg)
			}
		})
	}
}

func version0(t *Target) string {
	if t == nil {
		return ""
	}
	return t.Version
}

func TestVersions(t *testing.T) {
	order := []string{"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"}
	for i := 0; i+1 < len(order); i++ {
		if c, err := CompareVersions(order[i], order[i+1]); err != nil || c >= 0 {
			t.Errorf("%s vs %s = %d, %v; want -1", order[i], order[i+1], c, err)
		}
	}
	ranges := []struct {
		v, min, max, to string
		ok              bool
	}{
		{"2.9.7", "2.0.0", "2.9.x", "3.0.0", true},
		{"2.10.0", "2.0.0", "2.9.x", "3.0.0", false},
		{"2.99.1", "2.0.0", "2.x", "3.0.0", true},
		{"1.9.9", "2.0.0", "2.x", "3.0.0", false},
		{"2.9.4", "", "2.9.4", "3.0.0", true},
		{"2.9.5", "", "2.9.4", "3.0.0", false},
		{"2.9.5", "", "", "3.0.0", true},
		{"3.0.0", "", "", "3.0.0", false},
		{"7.0.0", "", "x", "3.0.0", true},
	}
	for _, r := range ranges {
		if ok, err := InRange(r.v, r.min, r.max, r.to); err != nil || ok != r.ok {
			t.Errorf("InRange(%s, [%s, %s]) = %v, %v; want %v", r.v, r.min, r.max, ok, err, r.ok)
		}
	}
}

// TestSelectSkipsUnsafeVersions: a target whose version is not a semantic version (and could
// climb out of a directory once used in a file name) is never selected.
func TestSelectSkipsUnsafeVersions(t *testing.T) {
	targets := []Target{full("1.0.0", "", ""), full("9.0.0-x/../../ESCAPED", "", ""), full("09.0.0", "", "")}
	sel, err := Select(targets, Device{Name: "tiny", Version: "0.9.0", Arch: "x86_64", Board: "pc"})
	if err != nil || sel.Target.Version != "1.0.0" || sel.Newest.Version != "1.0.0" {
		t.Fatalf("Select = %+v, %v; want 1.0.0", sel, err)
	}
	for _, v := range []string{"9.0.0-x/../../ESCAPED", "1.0.0-a b", "01.0.0"} {
		if err := CheckVersion(v); !errors.Is(err, ErrBadVersion) {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
	}
}

// TestSelectRoot: a package image's update brings the root its UKI names, with a root delta
// from the device's version when one is smaller; a UKI whose root is missing, or listed with
// other content than the UKI's target says, is no update at all.
func TestSelectRoot(t *testing.T) {
	withRoot := func(t *Target) { t.Root, t.RootSize, t.RootSHA256 = "tiny-"+t.Version+".root", 5000, "r"+t.Version }
	root := func(version string) Target {
		return Target{Path: "tiny-" + version + ".root", Size: 5000, SHA256: "r" + version, Kind: KindRoot,
			Name: "tiny", Version: version, Arch: "x86_64", Board: "pc", Channel: "stable"}
	}
	rootDelta := Target{Path: "tiny-1.0.0-to-1.1.0.root.patch", Size: 300, Kind: KindDelta, Name: "tiny", Version: "1.1.0",
		Arch: "x86_64", Board: "pc", Channel: "stable", From: "1.0.0", FromSHA256: "r1.0.0", Full: "tiny-1.1.0.root"}
	dev := Device{Name: "tiny", Version: "1.0.0", Arch: "x86_64", Board: "pc", SHA256: "s1.0.0"}
	targets := []Target{full("1.0.0", "", "", withRoot), root("1.0.0"), full("1.1.0", "1.0.0", "", withRoot), root("1.1.0"), rootDelta}

	sel, err := Select(targets, dev)
	if err != nil || sel.Root == nil || sel.Root.Path != "tiny-1.1.0.root" || sel.RootDelta == nil || sel.RootDelta.Path != rootDelta.Path {
		t.Fatalf("Select = %+v, %v; want 1.1.0 with its root and the root delta", sel, err)
	}
	if r := RunningRoot(targets, dev); r == nil || r.Path != "tiny-1.0.0.root" {
		t.Fatalf("RunningRoot = %+v", r)
	}
	if sel, _ := Select(targets, Device{Name: "tiny", Version: "0.9.0", Arch: "x86_64", Board: "pc"}); sel.RootDelta != nil {
		t.Fatalf("a root delta from 1.0.0 offered to a device on 0.9.0: %+v", sel.RootDelta)
	}
	wrong := root("1.1.0")
	wrong.SHA256 = "other"
	for name, ts := range map[string][]Target{
		"root missing":         {full("1.0.0", "", "", withRoot), full("1.1.0", "1.0.0", "", withRoot)},
		"root content differs": {full("1.1.0", "1.0.0", "", withRoot), wrong},
	} {
		if sel, err := Select(ts, dev); !errors.Is(err, ErrNoPath) || sel.Target != nil {
			t.Errorf("%s: Select = %+v, %v; want ErrNoPath", name, sel, err)
		}
	}
}
