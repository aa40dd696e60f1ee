package dpkgconf

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	const file = "# ranges\nalice:100000:65536\nbob:165536:1000\nbob:300000:70000\n1001:400000:65536\n" +
		"carol:x:65536\ncarol:4294967295:65536\ncarol:500000\n\n"
	for _, tc := range []struct {
		name string
		id   uint32
		want SubIDRange
		err  string
	}{
		{"alice", 1000, SubIDRange{100000, MinSubIDs}, ""},
		{"bob", 1002, SubIDRange{300000, MinSubIDs}, ""},  // the first range that is large enough
		{"dave", 1001, SubIDRange{400000, MinSubIDs}, ""}, // by number
		{"carol", 1003, SubIDRange{}, "no subordinate id range for carol"},
		{"erin", 1004, SubIDRange{}, "no subordinate id range for erin"},
	} {
		got, err := ParseSubIDs(strings.NewReader(file), tc.name, tc.id)
		if tc.err != "" {
			if !errors.Is(err, ErrNoSubIDs) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := ParseSubIDs(strings.NewReader("frank:1:100\n"), "frank", 7); err == nil || !strings.Contains(err.Error(), "only smaller") {
		t.Errorf("a small range: %v", err)
	}
}

// TestMapArgs: in-image root is the user, 1..65535 the subordinate range (as newuidmap takes them).
func TestMapArgs(t *testing.T) {
	got := MapArgs(1000, SubIDRange{Start: 100000, Count: MinSubIDs})
	if want := []string{"0", "1000", "1", "1", "100000", "65535"}; !slices.Equal(got, want) {
		t.Errorf("MapArgs = %v, want %v", got, want)
	}
}

func FuzzParseSubIDs(f *testing.F) {
	f.Add("alice:100000:65536\n", "alice", uint32(1000))
	f.Add("# c\n1000:1:4294967295\nalice::\n:::\n", "alice", uint32(1000))
	f.Add(strings.Repeat("x", 70000)+"\nalice:1:65535\n", "alice", uint32(0))
	f.Fuzz(func(t *testing.T, file, name string, id uint32) {
		r, err := ParseSubIDs(strings.NewReader(file), name, id)
		if err != nil {
			return
		}
		if r.Count != MinSubIDs || uint64(r.Start)+uint64(r.Count) > 1<<32 {
			t.Errorf("range %+v", r)
		}
	})
}
