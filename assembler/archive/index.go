package archive

import (
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/kilnproject/kiln/assembler/deb"
)

// Archive is the package universe of a set of indices for some architectures (the first is the
// native one). Add indices, then Resolve.
type Archive struct {
	Arches []string
	all    map[string][]*Package // by name, every version of every index
	cand   map[string]*Package   // "name:arch" → apt's candidate: highest priority, then version
	provs  map[string][]*Package // virtual name → candidates providing it, sorted
	dirty  bool
}

// NewArchive returns an empty universe for arches; arches[0] is native.
func NewArchive(arches ...string) *Archive {
	return &Archive{Arches: arches, all: map[string][]*Package{}}
}

// Native is the native architecture.
func (a *Archive) Native() string { return a.Arches[0] }

// Add reads a Packages index from r into the universe, each package tagged with o. Packages of
// architectures not in Arches (nor "all") are ignored.
func (a *Archive) Add(o *Origin, r io.Reader) error {
	return ParsePackages(r, DefaultLimits, func(p *Package) error {
		if p.Arch != "all" && !slices.Contains(a.Arches, p.Arch) {
			return nil
		}
		p.Origin = o
		a.all[p.Name] = append(a.all[p.Name], p)
		a.dirty = true
		return nil
	})
}

// Len returns the number of package versions in the universe.
func (a *Archive) Len() int {
	n := 0
	for _, ps := range a.all {
		n += len(ps)
	}
	return n
}

// Candidate returns the version apt would install of name for arch ("all" packages count for
// every architecture), or nil.
func (a *Archive) Candidate(name, arch string) *Package {
	a.prepare()
	if p := a.cand[name+":"+arch]; p != nil {
		return p
	}
	return a.cand[name+":all"]
}

func (a *Archive) prepare() {
	if !a.dirty && a.cand != nil {
		return
	}
	a.cand, a.provs = map[string]*Package{}, map[string][]*Package{}
	for _, ps := range a.all {
		for _, p := range ps {
			k := p.Name + ":" + p.Arch
			if c := a.cand[k]; c == nil || better(p, c) {
				a.cand[k] = p
			}
		}
	}
	for _, p := range a.cand {
		for _, pv := range p.Provides {
			a.provs[pv.Name] = append(a.provs[pv.Name], p)
		}
	}
	for _, ps := range a.provs {
		sort.Slice(ps, func(i, j int) bool { return providerLess(ps[i], ps[j]) })
	}
	a.dirty = false
}

// better reports whether p beats c as candidate: higher pin priority, then higher version, then
// the earlier-named suite for a stable choice.
func better(p, c *Package) bool {
	if p.Origin.Priority != c.Origin.Priority {
		return p.Origin.Priority > c.Origin.Priority
	}
	if v := deb.CompareVersions(p.Version, c.Version); v != 0 {
		return v > 0
	}
	return p.Origin.Suite < c.Origin.Suite
}

var priorityRank = map[string]int{"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

func rank(p *Package) int {
	if r, ok := priorityRank[p.Priority]; ok {
		return r
	}
	return 5
}

// providerLess orders the providers of a virtual package as apt prefers them: essential first,
// then by Priority, then by name.
func providerLess(x, y *Package) bool {
	if x.Essential != y.Essential {
		return x.Essential
	}
	if rank(x) != rank(y) {
		return rank(x) < rank(y)
	}
	if x.Name != y.Name {
		return x.Name < y.Name
	}
	return x.Arch < y.Arch
}

// versionsOf describes the versions of name in the universe per suite, for error messages.
func (a *Archive) versionsOf(name string) string {
	ps := append([]*Package(nil), a.all[name]...)
	if len(ps) == 0 {
		return ""
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Origin.Suite != ps[j].Origin.Suite {
			return ps[i].Origin.Suite < ps[j].Origin.Suite
		}
		return deb.CompareVersions(ps[i].Version, ps[j].Version) < 0
	})
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s has %s", p.Origin.Suite, p.Version)
		if p.Arch != a.Native() && p.Arch != "all" {
			s += " (" + p.Arch + ")"
		}
	}
	return s
}
