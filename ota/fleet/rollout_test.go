package fleet

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/ota"
)

func TestSelectionStableAndCloseToShare(t *testing.T) {
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("kiln-tiny-%08x", i*2654435761)
	}
	for _, version := range []string{"1.2.0", "2.0.0-rc.1"} {
		prev := map[string]bool{}
		for _, share := range []int{100, 1000, 2500, 5000, 9000, AllDevices} {
			got := 0
			for _, id := range ids {
				sel := Selected(id, version, share)
				if sel {
					got++
				}
				if prev[id] && !sel {
					t.Fatalf("%s: device %s selected below %s but not at %s", version, id, FormatShare(share-1), FormatShare(share))
				}
				if sel != Selected(id, version, share) {
					t.Fatalf("%s: selection of %s not stable", version, id)
				}
				prev[id] = sel
			}
			if want := share * n / AllDevices; got < want-n/50 || got > want+n/50 {
				t.Errorf("%s at %s: %d of %d devices selected, want %d ± 2%%", version, FormatShare(share), got, n, want)
			}
		}
		for _, id := range ids[:100] {
			if Selected(id, version, 0) {
				t.Fatalf("%s selected at 0%%", id)
			}
		}
	}
	// Each version picks its own devices: the first 10% of one are not the first 10% of the next.
	same := 0
	for _, id := range ids {
		if Selected(id, "1.2.0", 1000) && Selected(id, "1.3.0", 1000) {
			same++
		}
	}
	if same > n/50 {
		t.Errorf("%d devices in the first 10%% of both 1.2.0 and 1.3.0; versions should choose independently", same)
	}
}

func TestParseShare(t *testing.T) {
	for in, want := range map[string]int{"10%": 1000, "100%": AllDevices, "0": 0, "12.5%": 1250, " 50 ": 5000} {
		got, err := ParseShare(in)
		if err != nil || got != want {
			t.Errorf("ParseShare(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, _ := ParseShare(FormatShare(got)); back != got {
			t.Errorf("FormatShare(%d) = %q does not read back", got, FormatShare(got))
		}
	}
	for _, in := range []string{"", "ten", "101%", "-1%", "NaN", "1e9"} {
		if _, err := ParseShare(in); err == nil {
			t.Errorf("ParseShare(%q) accepted", in)
		}
	}
}

// report stores a device reporting state for version target.
func report(t *testing.T, s Store, id, state, target string, at time.Time) {
	t.Helper()
	d := device(id, "key-"+id, state, at)
	if err := s.Put(testCtx(t), d, &Event{Time: at, State: state, Version: "1.1.0", Target: target}); err != nil {
		t.Fatal(err)
	}
}

func testAutomaticPause(t *testing.T, newDB func(*testing.T) string) {
	type step struct {
		id, state string
	}
	cases := []struct {
		name        string
		maxFailures int // basis points
		minDevices  int
		stored      bool // a rollout was set (else the version went to every device)
		steps       []step
		paused      bool
		tried, rb   int
	}{
		{"first rollback pauses by default", DefaultMaxFailures, DefaultMinDevices, true,
			[]step{{"a", ota.StateInstalled}, {"a", ota.StateRolledBack}}, true, 1, 1},
		{"a rollback among many", 1000, 2, true,
			[]step{{"a", ota.StateHealthy}, {"b", ota.StateHealthy}, {"c", ota.StateRolledBack}}, true, 3, 1},
		{"without a stored rollout too", DefaultMaxFailures, DefaultMinDevices, false,
			[]step{{"a", ota.StateInstalled}, {"a", ota.StateRolledBack}}, true, 1, 1},
		{"healthy devices keep it going", DefaultMaxFailures, DefaultMinDevices, true,
			[]step{{"a", ota.StateHealthy}, {"b", ota.StateHealthy}, {"c", ota.StateHealthy}, {"d", ota.StateHealthy},
				{"e", ota.StateHealthy}, {"f", ota.StateRolledBack}}, false, 6, 1},
		{"more than the share pauses", DefaultMaxFailures, DefaultMinDevices, true,
			[]step{{"a", ota.StateHealthy}, {"b", ota.StateHealthy}, {"c", ota.StateHealthy}, {"d", ota.StateRolledBack},
				{"e", ota.StateInstalled}}, true, 5, 1},
		{"minimum sample waits", 5000, 3, true,
			[]step{{"a", ota.StateRolledBack}, {"b", ota.StateInstalled}}, false, 2, 1},
		{"minimum sample reached", 5000, 3, true,
			[]step{{"a", ota.StateInstalled}, {"b", ota.StateInstalled}, {"a", ota.StateRolledBack}, {"c", ota.StateInstalled}, {"b", ota.StateRolledBack}}, true, 3, 2},
		{"a late install report does not undo a rollback", 5000, 2, true,
			[]step{{"a", ota.StateRolledBack}, {"a", ota.StateInstalled}, {"b", ota.StateHealthy}, {"c", ota.StateRolledBack}}, true, 3, 2},
		{"failed downloads are not rollbacks", DefaultMaxFailures, DefaultMinDevices, true,
			[]step{{"a", ota.StateFailed}, {"b", ota.StateDownloading}}, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, err := Open(ctx, newDB(t), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if c.stored {
				r := NewRollout("1.2.0", 5000)
				r.MaxFailures, r.MinDevices = c.maxFailures, c.minDevices
				if err := s.SetRollout(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			at := time.Unix(1700000000, 0)
			for i, st := range c.steps {
				report(t, s, st.id, st.state, "1.2.0", at.Add(time.Duration(i)*time.Second))
				// Another version's reports never count for 1.2.0.
				report(t, s, "other-"+st.id, ota.StateRolledBack, "1.3.0", at)
			}
			r, err := s.Rollout(ctx, "1.2.0")
			if !c.stored && !c.paused {
				if !errors.Is(err, ErrNoRollout) {
					t.Fatalf("rollout stored without a pause: %+v, %v", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Paused != c.paused || r.Tried != c.tried || r.RolledBack != c.rb {
				t.Fatalf("rollout %+v; want paused %v, %d tried, %d rolled back", r, c.paused, c.tried, c.rb)
			}
			if c.paused && !strings.Contains(r.Reason, fmt.Sprintf("devices that installed 1.2.0 rolled back (more than %s)", FormatShare(c.maxFailures))) {
				t.Errorf("reason %q does not say why", r.Reason)
			}
			if !c.paused && r.Reason != "" {
				t.Errorf("reason %q on a running rollout", r.Reason)
			}
			if c.stored && r.Share != 5000 {
				t.Errorf("share %d after the pause; want it kept (5000) for resume", r.Share)
			}
		})
	}
}

func testRolloutsAndPoliciesSurviveReopen(t *testing.T, newDB func(*testing.T) string) {
	ctx := testCtx(t)
	path := newDB(t)
	s, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRollout(ctx, NewRollout("1.2.0", 1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRollout(ctx, Rollout{Version: "not a version", Share: 10, MinDevices: 1}); err == nil {
		t.Error("rollout of a malformed version accepted")
	}
	if err := s.SetRollout(ctx, Rollout{Version: "1.3.0", Share: AllDevices + 1, MinDevices: 1}); err == nil {
		t.Error("rollout to more than 100% accepted")
	}
	if err := s.SetPolicy(ctx, Policy{ID: "dev-a", Hold: "1.1.0", Channel: "beta"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(ctx, Policy{ID: "dev-b", Hold: "../x"}); err == nil {
		t.Error("hold on a malformed version accepted")
	}
	s.Close()

	s, err = Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, err := s.Rollouts(ctx)
	if err != nil || len(rs) != 1 || rs[0].Version != "1.2.0" || rs[0].Share != 1000 || rs[0].Paused {
		t.Fatalf("rollouts after reopening: %+v, %v", rs, err)
	}
	if _, err := s.Rollout(ctx, "1.3.0"); !errors.Is(err, ErrNoRollout) {
		t.Errorf("Rollout of an unknown version: %v, want ErrNoRollout", err)
	}
	p, err := s.Policy(ctx, "dev-a")
	if err != nil || p.Hold != "1.1.0" || p.Channel != "beta" {
		t.Fatalf("policy after reopening: %+v, %v", p, err)
	}
	if err := s.SetPolicy(ctx, Policy{ID: "dev-a"}); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Policies(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("policies after clearing: %+v, %v", ps, err)
	}
	if err := s.DeleteRollout(ctx, "1.2.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollout(ctx, "1.2.0"); !errors.Is(err, ErrNoRollout) {
		t.Errorf("rollout still there after DeleteRollout: %v", err)
	}
}

// FuzzParseShare: any text is a share from 0 to 100% that reads back the same, or an error.
func FuzzParseShare(f *testing.F) {
	for _, s := range []string{"10%", "12.5%", "100", "0", "-1", "1e2", "NaN", "Inf", "50%%", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bp, err := ParseShare(s)
		if err != nil {
			return
		}
		if bp < 0 || bp > AllDevices {
			t.Fatalf("ParseShare(%q) = %d, outside 0–%d", s, bp, AllDevices)
		}
		if back, err := ParseShare(FormatShare(bp)); err != nil || back != bp {
			t.Fatalf("ParseShare(%q) = %d; FormatShare reads back as %d, %v", s, bp, back, err)
		}
	})
}
