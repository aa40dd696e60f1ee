package archive

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/archive/archivetest"
)

// universe is the archive the resolver table runs against.
var universe = []archivetest.Pkg{
	archivetest.P("libc6", "2.36-9", "Priority", "optional", "Multi-Arch", "same"),
	archivetest.P("libc6", "2.36-9", "Architecture", "i386", "Multi-Arch", "same"),
	archivetest.P("base-files", "12.4", "Essential", "yes", "Priority", "required"),
	archivetest.P("dash", "0.5.12-2", "Essential", "yes", "Priority", "required", "Pre-Depends", "libc6 (>= 2.34)"),
	// The Essential base: required but not Essential packages stay out; an Essential package's
	// alternatives are chosen as apt chooses them (usrmerge and its perl), unless preferred.
	archivetest.P("apt", "2.6.1", "Priority", "required", "Depends", "libc6"),
	archivetest.P("init-helpers", "1.65", "Architecture", "all", "Essential", "yes", "Priority", "required", "Depends", "usrmerge | usr-is-merged"),
	archivetest.P("usrmerge", "37", "Architecture", "all", "Provides", "usr-is-merged", "Depends", "perl-full"),
	archivetest.P("usr-is-merged", "37", "Architecture", "all"),
	archivetest.P("perl-full", "5.36"),
	archivetest.P("mawk-e", "1.3", "Essential", "yes", "Priority", "required"),
	archivetest.P("app-awk", "1.0", "Depends", "gawk-c | mawk-e"),
	// Alternatives.
	archivetest.P("awk-a", "1.0", "Depends", "libc6"),
	archivetest.P("awk-b", "1.0", "Depends", "libc6"),
	archivetest.P("app-alt", "1.0", "Depends", "awk-a | awk-b"),
	archivetest.P("app-alt-missing", "1.0", "Depends", "not-in-archive | awk-b"),
	archivetest.P("awk-broken", "1.0", "Depends", "libc6, not-in-archive"),
	archivetest.P("awk-broken2", "1.0", "Depends", "also-missing"),
	archivetest.P("app-alt-broken", "1.0", "Depends", "awk-broken | awk-b"),
	archivetest.P("app-alt-allbroken", "1.0", "Depends", "awk-broken | awk-broken2"),
	// Virtual packages and providers.
	archivetest.P("exim", "4.96", "Priority", "standard", "Provides", "mta"),
	archivetest.P("postfix", "3.7", "Priority", "optional", "Provides", "mta"),
	archivetest.P("app-virt", "1.0", "Depends", "mta"),
	archivetest.P("app-virt-only", "1.0", "Depends", "default-mta | mta"),
	// Versioned provides.
	archivetest.P("libfoo1", "1.0", "Provides", "libfoo-abi (= 1)"),
	archivetest.P("libfoo2", "2.0", "Provides", "libfoo-abi (= 2)"),
	archivetest.P("app-vprov", "1.0", "Depends", "libfoo-abi (>= 2)"),
	archivetest.P("libbar", "1.0", "Provides", "barvirt"),
	archivetest.P("app-unversioned-prov", "1.0", "Depends", "barvirt (>= 1)"),
	// Version constraints: the candidate is the highest version.
	archivetest.P("libssl3", "3.0.7-1", "Depends", "libc6"),
	archivetest.P("libssl3", "3.0.8-1", "Depends", "libc6"),
	archivetest.P("app-lt", "1", "Depends", "libssl3 (<< 3.1)"),
	archivetest.P("app-le", "1", "Depends", "libssl3 (<= 3.0.8-1)"),
	archivetest.P("app-eq", "1", "Depends", "libssl3 (= 3.0.8-1)"),
	archivetest.P("app-ge", "1", "Depends", "libssl3 (>= 3.0.8)"),
	archivetest.P("app-gt", "1", "Depends", "libssl3 (>> 3.0)"),
	archivetest.P("app-gt-fail", "1", "Depends", "libssl3 (>> 3.0.8-1)"),
	archivetest.P("app-eq-old", "1", "Depends", "libssl3 (= 3.0.7-1)"),
	archivetest.P("mosquitto", "2.0.11-1.2", "Depends", "libc6, libssl3 (>= 3.0.9)"),
	archivetest.P("garden", "1.0", "Architecture", "all", "Depends", "python3, mosquitto"),
	archivetest.P("python3", "3.11.2-1", "Multi-Arch", "allowed", "Depends", "libc6"),
	// Conflicts and Breaks.
	archivetest.P("sel-x", "1.0"),
	archivetest.P("mawk-c", "1.0", "Conflicts", "sel-x"),
	archivetest.P("gawk-c", "1.0"),
	archivetest.P("app-conf", "1.0", "Depends", "mawk-c | gawk-c"),
	archivetest.P("breaker", "1.0", "Breaks", "mawk-c (<< 2)"),
	archivetest.P("app-conf-all", "1.0", "Depends", "mawk-c"),
	// Multi-Arch.
	archivetest.P("helper", "1.0", "Architecture", "i386", "Multi-Arch", "foreign"),
	archivetest.P("app-ma-foreign", "1.0", "Depends", "helper"),
	archivetest.P("i386only", "1.0", "Architecture", "i386"),
	archivetest.P("app-ma-plain", "1.0", "Depends", "i386only"),
	archivetest.P("py-tool", "1.0", "Architecture", "i386", "Depends", "python3:any"),
	archivetest.P("app-ma-any", "1.0", "Depends", "python3:any"),
	// Pre-Depends.
	archivetest.P("app-pre", "1.0", "Pre-Depends", "awk-b"),
}

func TestResolve(t *testing.T) {
	ta := archivetest.New(t, universe, nil)
	a, err := load(t, ta, "amd64", "i386")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		req     []string
		base    bool
		prefer  []string
		want    string // names=versions, sorted; ":i386" marks foreign ones
		wantErr string
	}{
		{name: "first alternative", req: []string{"app-alt"}, want: "app-alt=1.0 awk-a=1.0 libc6=2.36-9"},
		{name: "selected alternative preferred", req: []string{"awk-b", "app-alt"}, want: "app-alt=1.0 awk-b=1.0 libc6=2.36-9"},
		{name: "missing alternative skipped", req: []string{"app-alt-missing"}, want: "app-alt-missing=1.0 awk-b=1.0 libc6=2.36-9"},
		{name: "virtual by priority", req: []string{"app-virt"}, want: "app-virt=1.0 exim=4.96"},
		{name: "virtual selected provider", req: []string{"postfix", "app-virt"}, want: "app-virt=1.0 postfix=3.7"},
		{name: "virtual behind missing alternative", req: []string{"app-virt-only"}, want: "app-virt-only=1.0 exim=4.96"},
		{name: "versioned provides", req: []string{"app-vprov"}, want: "app-vprov=1.0 libfoo2=2.0"},
		{name: "unversioned provides cannot meet a version", req: []string{"app-unversioned-prov"},
			wantErr: "app-unversioned-prov → barvirt (>= 1): provided only by libbar 1.0, none satisfying it"},
		{name: "<<", req: []string{"app-lt"}, want: "app-lt=1 libc6=2.36-9 libssl3=3.0.8-1"},
		{name: "<=", req: []string{"app-le"}, want: "app-le=1 libc6=2.36-9 libssl3=3.0.8-1"},
		{name: "=", req: []string{"app-eq"}, want: "app-eq=1 libc6=2.36-9 libssl3=3.0.8-1"},
		{name: ">=", req: []string{"app-ge"}, want: "app-ge=1 libc6=2.36-9 libssl3=3.0.8-1"},
		{name: ">>", req: []string{"app-gt"}, want: "app-gt=1 libc6=2.36-9 libssl3=3.0.8-1"},
		{name: ">> unmet", req: []string{"app-gt-fail"}, wantErr: "app-gt-fail → libssl3 (>> 3.0.8-1): stable has 3.0.7-1, stable has 3.0.8-1"},
		{name: "only the candidate installs, like apt", req: []string{"app-eq-old"}, wantErr: "app-eq-old → libssl3 (= 3.0.7-1)"},
		{name: "request with a version", req: []string{"libssl3 (>= 3.0.8)"}, want: "libc6=2.36-9 libssl3=3.0.8-1"},
		{name: "unsatisfiable names the chain", req: []string{"garden"},
			wantErr: "garden → mosquitto → libssl3 (>= 3.0.9): stable has 3.0.7-1, stable has 3.0.8-1"},
		{name: "unknown package", req: []string{"nosuch"}, wantErr: "nosuch: no package nosuch in stable"},
		{name: "conflicting alternative skipped", req: []string{"sel-x", "app-conf"}, want: "app-conf=1.0 gawk-c=1.0 sel-x=1.0"},
		{name: "no conflict, first alternative", req: []string{"app-conf"}, want: "app-conf=1.0 mawk-c=1.0"},
		{name: "breaks honoured", req: []string{"breaker", "app-conf"}, want: "app-conf=1.0 breaker=1.0 gawk-c=1.0"},
		{name: "conflict unsatisfiable", req: []string{"sel-x", "app-conf-all"}, wantErr: "app-conf-all → mawk-c: mawk-c 1.0 conflicts with sel-x 1.0"},
		{name: "multi-arch foreign from another arch", req: []string{"app-ma-foreign"}, want: "app-ma-foreign=1.0 helper=1.0:i386"},
		{name: "plain dependency needs own arch", req: []string{"app-ma-plain"}, wantErr: "app-ma-plain → i386only: stable has 1.0 (i386)"},
		{name: "explicit arch qualifier", req: []string{"libc6:i386"}, want: "libc6=2.36-9:i386"},
		{name: "multi-arch same co-installs", req: []string{"libc6", "libc6:i386"}, want: "libc6=2.36-9 libc6=2.36-9:i386"},
		{name: ":any met by allowed of the native arch", req: []string{"py-tool:i386"}, want: "libc6=2.36-9 py-tool=1.0:i386 python3=3.11.2-1"},
		{name: "pre-depends followed", req: []string{"app-pre"}, want: "app-pre=1.0 awk-b=1.0 libc6=2.36-9"},
		{name: "alternative with a missing dependency skipped", req: []string{"app-alt-broken"}, want: "app-alt-broken=1.0 awk-b=1.0 libc6=2.36-9"},
		{name: "no alternative installable: the first fails with its chain", req: []string{"app-alt-allbroken"},
			wantErr: "app-alt-allbroken → awk-broken → not-in-archive: no package not-in-archive in stable"},
		{name: "essential base, required but not essential left out", req: []string{"app-virt"}, base: true,
			want: "app-virt=1.0 base-files=12.4 dash=0.5.12-2 exim=4.96 init-helpers=1.65 libc6=2.36-9 mawk-e=1.3 perl-full=5.36 usrmerge=37"},
		{name: "preferred alternative (merged /usr)", req: []string{"app-virt"}, base: true, prefer: []string{"usr-is-merged"},
			want: "app-virt=1.0 base-files=12.4 dash=0.5.12-2 exim=4.96 init-helpers=1.65 libc6=2.36-9 mawk-e=1.3 usr-is-merged=37"},
		{name: "preferred package not needed is not added", req: []string{"app-alt"}, prefer: []string{"usr-is-merged"}, want: "app-alt=1.0 awk-a=1.0 libc6=2.36-9"},
		{name: "without the base, the first alternative", req: []string{"app-awk"}, want: "app-awk=1.0 gawk-c=1.0"},
		{name: "the essential base is installed first: its alternative wins", req: []string{"app-awk"}, base: true, prefer: []string{"usr-is-merged"},
			want: "app-awk=1.0 base-files=12.4 dash=0.5.12-2 init-helpers=1.65 libc6=2.36-9 mawk-e=1.3 usr-is-merged=37"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := a.Resolve(c.req, Options{Base: c.base, Prefer: c.prefer})
			if c.wantErr != "" {
				var ue *UnsatisfiableError
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Resolve(%q) = %s, %v; want an unsatisfiable error containing %q", c.req, names(got), err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", c.req, err)
			}
			var s []string
			for _, p := range got {
				e := p.Name + "=" + p.Version
				if p.Arch == "i386" {
					e += ":i386"
				}
				s = append(s, e)
			}
			if g := strings.Join(s, " "); g != c.want {
				t.Errorf("Resolve(%q)\n got %s\nwant %s", c.req, g, c.want)
			}
		})
	}
}

func TestResolveIsDeterministic(t *testing.T) {
	ta := archivetest.New(t, universe, nil)
	var first string
	for i := 0; i < 5; i++ {
		a, err := load(t, ta, "amd64", "i386")
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Resolve([]string{"app-virt", "app-alt", "app-conf", "python3"}, Options{Base: true})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = names(got)
		} else if names(got) != first {
			t.Fatalf("run %d: %s, run 0: %s", i, names(got), first)
		}
	}
}
