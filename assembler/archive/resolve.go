package archive

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
)

// Options tune Resolve.
type Options struct {
	// Base adds the Essential set, resolved before the requests as apt finds it installed on any
	// Debian system: every Essential: yes package of the native architecture and its
	// dependencies, what maintainer scripts may rely on (dpkg, a shell, coreutils …), as
	// mmdebstrap's "essential" variant. Priority: required packages that are not Essential
	// (apt, e2fsprogs, tzdata …) do not come with it.
	Base bool
	// Prefer names packages that win a dependency they satisfy over its other alternatives and
	// providers, like a package apt finds already installed: what the target system provides
	// itself (usr-is-merged on a tree built with merged /usr, as debootstrap does).
	Prefer []string
}

// UnsatisfiableError says which request cannot be installed and why, through the chain of
// packages that led to it.
type UnsatisfiableError struct {
	Chain  []string // the requested package, the packages depending on each other, the failing relation
	Reason string
}

func (e *UnsatisfiableError) Error() string {
	return strings.Join(e.Chain, " → ") + ": " + e.Reason
}

type resolver struct {
	a      *Archive
	prefer []string
	sel    map[string]*Package // "name:arch"
	byName map[string][]*Package
	queue  []queued
}

type queued struct {
	p     *Package
	chain []string
}

// Resolve returns the closure apt would install for requests, sorted by name and architecture.
// A request is a relation as in a Depends field: "python3", "python3 (>= 3.11)", "libc6:i386",
// "mawk | gawk". It follows Pre-Depends and Depends (not Recommends). A dependency already met
// by a selected package adds nothing; else a preferred package (Options.Prefer) that meets it is
// taken, else, as apt's MarkInstall chooses, the first alternative installable (a candidate
// satisfying the version, or a provider, Essential and higher Priority providers first) that
// conflicts with nothing selected and whose own dependencies all have candidates. Like apt it
// installs candidate versions only (highest pin priority, then highest version).
func (a *Archive) Resolve(requests []string, opt Options) ([]*Package, error) {
	if len(a.Arches) == 0 {
		return nil, fmt.Errorf("archive: no architecture given")
	}
	a.prepare()
	r := &resolver{a: a, prefer: opt.Prefer, sel: map[string]*Package{}, byName: map[string][]*Package{}}
	var rels []Relation
	if opt.Base {
		var names []string
		for k, p := range a.cand {
			if p.Essential && (p.Arch == a.Native() || p.Arch == "all") {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			rels = append(rels, Relation{{Name: a.cand[k].Name}})
		}
	}
	for _, req := range requests {
		rs, err := ParseRelations(req)
		if err != nil {
			return nil, fmt.Errorf("request %q: %w", req, err)
		}
		rels = append(rels, rs...)
	}
	for _, rel := range rels {
		if err := r.satisfy(rel, nil, a.Native()); err != nil {
			return nil, err
		}
		if err := r.drain(); err != nil {
			return nil, err
		}
	}
	out := make([]*Package, 0, len(r.sel))
	for _, p := range r.sel {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Arch < out[j].Arch
	})
	return out, nil
}

func (r *resolver) drain() error {
	for len(r.queue) > 0 {
		q := r.queue[0]
		r.queue = r.queue[1:]
		arch := r.ctxArch(q.p)
		for _, deps := range [][]Relation{q.p.PreDepends, q.p.Depends} {
			for _, rel := range deps {
				if err := r.satisfy(rel, q.chain, arch); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ctxArch is the architecture p's dependencies are resolved for: its own, native for "all".
func (r *resolver) ctxArch(p *Package) string {
	if p.Arch == "all" {
		return r.a.Native()
	}
	return p.Arch
}

func (r *resolver) satisfy(rel Relation, chain []string, arch string) error {
	var alts Relation
	for _, d := range rel {
		if d.ForArch(arch) {
			alts = append(alts, d)
		}
	}
	if len(alts) == 0 {
		return nil
	}
	for _, d := range alts {
		for _, p := range r.selectedFor(d) {
			if r.matches(p, d, arch) {
				return nil
			}
		}
	}
	var opts []*Package // installable candidates in preference order
	var reasons []string
	for _, d := range alts {
		cands, why := r.candidates(d, arch)
		n := 0
		for _, c := range cands {
			if other := r.conflicting(c); other != nil {
				why = fmt.Sprintf("%s %s conflicts with %s %s", c.Name, c.Version, other.Name, other.Version)
				continue
			}
			opts = append(opts, c)
			n++
		}
		if n == 0 {
			reasons = append(reasons, why)
		}
	}
	if len(opts) == 0 {
		return &UnsatisfiableError{Chain: append(append([]string(nil), chain...), rel.String()), Reason: strings.Join(reasons, "; ")}
	}
	pick := opts[0]
	if p := r.preferred(opts); p != nil {
		pick = p
	} else if len(opts) > 1 {
		// apt skips an alternative it sees cannot be installed one level down; when none can,
		// the first one fails with its chain.
		for _, c := range opts {
			if r.depsHaveCandidates(c) {
				pick = c
				break
			}
		}
	}
	r.add(pick, append(append([]string(nil), chain...), pick.Name))
	return nil
}

// preferred returns the first option named in Options.Prefer.
func (r *resolver) preferred(opts []*Package) *Package {
	for _, c := range opts {
		if slices.Contains(r.prefer, c.Name) {
			return c
		}
	}
	return nil
}

// depsHaveCandidates reports whether every Pre-Depends and Depends of p is met by a selected
// package or has an installable candidate, not looking further.
func (r *resolver) depsHaveCandidates(p *Package) bool {
	arch := r.ctxArch(p)
	for _, deps := range [][]Relation{p.PreDepends, p.Depends} {
		for _, rel := range deps {
			ok, any := false, false
			for _, d := range rel {
				if !d.ForArch(arch) {
					continue
				}
				any = true
				if slices.ContainsFunc(r.selectedFor(d), func(s *Package) bool { return r.matches(s, d, arch) }) {
					ok = true
					break
				}
				if cands, _ := r.candidates(d, arch); len(cands) > 0 {
					ok = true
					break
				}
			}
			if any && !ok {
				return false
			}
		}
	}
	return true
}

func (r *resolver) add(p *Package, chain []string) {
	r.sel[p.Name+":"+p.Arch] = p
	r.byName[p.Name] = append(r.byName[p.Name], p)
	for _, pv := range p.Provides {
		r.byName[pv.Name] = append(r.byName[pv.Name], p)
	}
	r.queue = append(r.queue, queued{p, chain})
}

// selectedFor returns the selected packages named d.Name or providing it.
func (r *resolver) selectedFor(d Dep) []*Package { return r.byName[d.Name] }

// candidates lists the installable packages for d in preference order: the real package (own
// architecture, then "all", then a Multi-Arch: foreign/allowed one), then providers. When there
// are none, why says so.
func (r *resolver) candidates(d Dep, arch string) (out []*Package, why string) {
	a := r.a
	archOrder := []string{arch, "all"}
	switch {
	case d.ArchQ == "native":
		archOrder = []string{a.Native(), "all"}
	case d.ArchQ != "" && d.ArchQ != "any":
		archOrder = []string{d.ArchQ}
	}
	for _, ar := range a.Arches {
		if !slices.Contains(archOrder, ar) {
			archOrder = append(archOrder, ar)
		}
	}
	real := false
	for _, ar := range archOrder {
		if p := a.cand[d.Name+":"+ar]; p != nil {
			real = true
			if r.matches(p, d, arch) {
				out = append(out, p)
			}
		}
	}
	for _, p := range a.provs[d.Name] {
		if r.matches(p, d, arch) && !containsPkg(out, p) {
			out = append(out, p)
		}
	}
	switch {
	case len(out) > 0:
	case real || len(a.all[d.Name]) > 0:
		why = a.versionsOf(d.Name)
		if why == "" {
			why = "no installable version"
		}
	case len(a.provs[d.Name]) > 0:
		var names []string
		for _, p := range a.provs[d.Name] {
			names = append(names, p.Name+" "+p.Version)
		}
		why = "provided only by " + strings.Join(names, ", ") + ", none satisfying it"
	default:
		why = fmt.Sprintf("no package %s in %s", d.Name, r.suites())
	}
	return out, why
}

func (r *resolver) suites() string {
	seen := map[string]bool{}
	var s []string
	for _, ps := range r.a.all {
		for _, p := range ps {
			if !seen[p.Origin.Suite] {
				seen[p.Origin.Suite] = true
				s = append(s, p.Origin.Suite)
			}
		}
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "the archive (no packages loaded)"
	}
	return strings.Join(s, ", ")
}

func containsPkg(list []*Package, p *Package) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
}

// matches reports whether p satisfies d for a dependent of architecture arch, by its own name
// or by what it provides.
func (r *resolver) matches(p *Package, d Dep, arch string) bool {
	if !r.archOK(p, d.ArchQ, arch) {
		return false
	}
	if p.Name == d.Name {
		return deb.Satisfies(p.Version, string(d.Op), d.Version)
	}
	for _, pv := range p.Provides {
		if pv.Name != d.Name {
			continue
		}
		if d.Op == OpAny {
			return true
		}
		if pv.Op == OpEQ && deb.Satisfies(pv.Version, string(d.Op), d.Version) {
			return true
		}
	}
	return false
}

// archOK applies the Multi-Arch rules: a plain dependency is met by the dependent's own
// architecture, "all", or a Multi-Arch: foreign package; ":any" also by Multi-Arch: allowed;
// an explicit qualifier by that architecture only.
func (r *resolver) archOK(p *Package, qual, arch string) bool {
	switch qual {
	case "":
	case "native":
		arch = r.a.Native()
	case "any":
		if p.MultiArch == "allowed" {
			return true
		}
	default:
		return p.Arch == qual || p.Arch == "all" && qual == r.a.Native()
	}
	return p.Arch == arch || p.Arch == "all" || p.MultiArch == "foreign"
}

// conflicting returns a selected package that c conflicts with or breaks, or that conflicts with
// or breaks c.
func (r *resolver) conflicting(c *Package) *Package {
	if s := r.sel[c.Name+":"+c.Arch]; s != nil && s != c {
		return s
	}
	for _, s := range r.sel {
		if s == c {
			continue
		}
		if r.hits(c, s) || r.hits(s, c) {
			return s
		}
	}
	return nil
}

// hits reports whether x's Conflicts or Breaks match y. A package conflicting with a virtual
// name it provides itself does not conflict with itself.
func (r *resolver) hits(x, y *Package) bool {
	for _, rels := range [][]Relation{x.Conflicts, x.Breaks} {
		for _, rel := range rels {
			for _, d := range rel {
				if d.Name == x.Name || !d.ForArch(r.ctxArch(x)) {
					continue
				}
				if (y.Name == d.Name || providesName(y, d.Name)) && r.matchesAnyArch(y, d) {
					return true
				}
			}
		}
	}
	return false
}

func (r *resolver) matchesAnyArch(y *Package, d Dep) bool {
	d.ArchQ = ""
	return r.matches(y, d, y.Arch) || (y.Arch == "all" && r.matches(y, d, r.a.Native()))
}

func providesName(p *Package, name string) bool {
	for _, pv := range p.Provides {
		if pv.Name == name {
			return true
		}
	}
	return false
}
