package agent

import "testing"

func TestGRUBSlots(t *testing.T) {
	parse := func(files ...string) []Entry {
		var es []Entry
		for _, f := range files {
			e, _ := ParseEntry(f)
			es = append(es, e)
		}
		return es
	}
	for _, tc := range []struct {
		files          []string
		running        string
		def, trial     string
		trialTriesLeft int
	}{
		{[]string{"x-1.0.0.efi"}, "x-1.0.0", "x-1.0.0", "", 0},
		{[]string{"x-1.0.0.efi", "x-1.1.0+3.efi"}, "x-1.0.0", "x-1.0.0", "x-1.1.0", 3},
		{[]string{"x-1.1.0+1-2.efi", "x-1.0.0.efi"}, "x-1.1.0", "x-1.0.0", "x-1.1.0", 1},
		{[]string{"x-1.0.0.efi", "x-1.1.0+0-3.efi"}, "x-1.0.0", "x-1.0.0", "", 0},
		// after a bless both are blessed: the running one is the default, even if older
		{[]string{"x-1.10.0.efi", "x-1.9.0.efi"}, "x-1.9.0", "x-1.9.0", "", 0},
		{[]string{"x-1.10.0.efi", "x-1.9.0.efi"}, "x-2.0.0", "x-1.10.0", "", 0},
	} {
		def, trial := slotsOf(parse(tc.files...), tc.running)
		if def.Base != tc.def || trial.Base != tc.trial || trial.Left != tc.trialTriesLeft {
			t.Errorf("%v running %s: default %q trial %q (%d left), want %q %q (%d)", tc.files, tc.running,
				def.Base, trial.Base, trial.Left, tc.def, tc.trial, tc.trialTriesLeft)
		}
	}
}
