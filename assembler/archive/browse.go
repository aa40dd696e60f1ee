package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kilnproject/kiln/assembler/internal/suggest"
	"github.com/kilnproject/kiln/internal/atomicfile"
)

// Entry is one package as a search lists it: the candidate version for the native architecture.
type Entry struct {
	Name, Version, Arch string
	Description         string // short description
	Size                int64  // download size in bytes
	InstalledSize       int64  // bytes
}

// Index is a searchable view of an Archive for front ends: package names sorted once, so a
// search is cheap enough to run on every keystroke. It is safe for concurrent use.
type Index struct {
	a       *Archive
	entries []Entry // by name
	names   blob    // the names, for substring search
	descs   blob    // lower-case short descriptions
	virtual map[string]bool
}

// NewIndex indexes a's candidate packages for its native architecture (and "all").
func NewIndex(a *Archive) *Index {
	ix := &Index{a: a, virtual: map[string]bool{}}
	for name := range a.all {
		p := a.Candidate(name, a.Native())
		if p == nil {
			continue
		}
		ix.entries = append(ix.entries, Entry{Name: p.Name, Version: p.Version, Arch: p.Arch,
			Description: p.Description, Size: p.Size, InstalledSize: p.InstalledSize})
		for _, pv := range p.Provides {
			ix.virtual[pv.Name] = true
		}
	}
	sort.Slice(ix.entries, func(i, j int) bool { return ix.entries[i].Name < ix.entries[j].Name })
	nameList, descList := make([]string, len(ix.entries)), make([]string, len(ix.entries))
	for i, e := range ix.entries {
		nameList[i], descList[i] = e.Name, strings.ToLower(e.Description)
	}
	ix.names, ix.descs = newBlob(nameList), newBlob(descList)
	return ix
}

// blob is a list of strings joined by newlines, so a substring search over all of them is one
// fast strings.Index scan.
type blob struct {
	text  string
	start []int // offset of each string
}

func newBlob(list []string) blob {
	var b strings.Builder
	start := make([]int, len(list))
	for i, s := range list {
		start[i] = b.Len()
		b.WriteString(strings.ReplaceAll(s, "\n", " "))
		b.WriteByte('\n')
	}
	return blob{b.String(), start}
}

// each calls fn with the index of every string containing q, in order, until fn returns false.
func (b blob) each(q string, fn func(i int) bool) {
	if strings.Contains(q, "\n") {
		return
	}
	for off := 0; off < len(b.text); {
		j := strings.Index(b.text[off:], q)
		if j < 0 {
			return
		}
		i := sort.SearchInts(b.start, off+j+1) - 1
		if !fn(i) {
			return
		}
		if i+1 >= len(b.start) {
			return
		}
		off = b.start[i+1]
	}
}

// Archive is the archive the index was made from.
func (ix *Index) Archive() *Archive { return ix.a }

// Len is the number of packages indexed.
func (ix *Index) Len() int { return len(ix.entries) }

// Lookup returns the entry of a package name.
func (ix *Index) Lookup(name string) (Entry, bool) {
	i := sort.Search(len(ix.entries), func(i int) bool { return ix.entries[i].Name >= name })
	if i < len(ix.entries) && ix.entries[i].Name == name {
		return ix.entries[i], true
	}
	return Entry{}, false
}

// Search returns up to n packages matching query: names starting with it first (shortest
// first, then in name order), then names containing it, then short descriptions containing it (case-insensitive).
// A version constraint or architecture after the name ("python3 (>= 3.11)", "libc6:amd64") is
// ignored.
func (ix *Index) Search(query string, n int) []Entry {
	q := strings.ToLower(query)
	if i := strings.IndexByte(q, '('); i >= 0 {
		q = q[:i]
	}
	q = strings.TrimSpace(q)
	if i := strings.IndexByte(q, ':'); i >= 0 && !strings.Contains(q, " ") {
		q = q[:i] // "libc6:amd64"
	}
	if q == "" || n <= 0 {
		return nil
	}
	// Names starting with q, shortest first: "python3" before "python3-yaml" and "python-apt-doc".
	lo := sort.Search(len(ix.entries), func(i int) bool { return ix.entries[i].Name >= q })
	hi := lo + sort.Search(len(ix.entries)-lo, func(i int) bool { return !strings.HasPrefix(ix.entries[lo+i].Name, q) })
	out := ix.shortest(lo, hi, n)
	if len(out) < n {
		ix.names.each(q, func(i int) bool {
			if !strings.HasPrefix(ix.entries[i].Name, q) {
				out = append(out, ix.entries[i])
			}
			return len(out) < n
		})
	}
	if len(out) < n {
		ix.descs.each(q, func(i int) bool {
			if !strings.Contains(ix.entries[i].Name, q) {
				out = append(out, ix.entries[i])
			}
			return len(out) < n
		})
	}
	return out
}

// shortest returns the n entries of entries[lo:hi] with the shortest names, shortest first and
// in name order among equal lengths, in one counting pass (a one-letter query matches
// thousands).
func (ix *Index) shortest(lo, hi, n int) []Entry {
	var hist [maxNameLen + 2]int
	for _, e := range ix.entries[lo:hi] {
		hist[min(len(e.Name), maxNameLen+1)]++
	}
	limit, total := 0, 0 // names up to limit long make the n shortest
	for limit = range hist {
		if total += hist[limit]; total >= n {
			break
		}
	}
	var buckets [maxNameLen + 2][]Entry
	for _, e := range ix.entries[lo:hi] {
		if l := min(len(e.Name), maxNameLen+1); l <= limit {
			buckets[l] = append(buckets[l], e)
		}
	}
	out := make([]Entry, 0, n)
	for _, b := range buckets {
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out
}

// maxNameLen is the length up to which Search orders prefix matches by length.
const maxNameLen = 64

// Estimate is what a package list resolves to.
type Estimate struct {
	Packages      []*Package // the closure, sorted by name
	Download      int64      // bytes of .debs
	InstalledSize int64      // bytes the packages take installed: the root file system's content
}

// UnknownPackageError is a request for a package the archive does not have.
type UnknownPackageError struct {
	Name        string
	Suggestions []string // close names in the archive
}

func (e *UnknownPackageError) Error() string {
	msg := fmt.Sprintf("no package %q in the archive", e.Name)
	if len(e.Suggestions) > 0 {
		msg += "; did you mean " + strings.Join(e.Suggestions, ", ") + "?"
	}
	return msg
}

// Estimate resolves requests (as Archive.Resolve takes them) and adds up their sizes. A request
// naming a package the archive has neither as a package nor as a virtual one fails with an
// *UnknownPackageError suggesting close names.
func (ix *Index) Estimate(ctx context.Context, requests []string, opt Options) (*Estimate, error) {
	for _, req := range requests {
		rels, err := ParseRelations(req)
		if err != nil {
			return nil, fmt.Errorf("request %q: %w", req, err)
		}
		for _, rel := range rels {
			known := false
			for _, d := range rel {
				if _, ok := ix.Lookup(d.Name); ok || ix.virtual[d.Name] {
					known = true
				}
			}
			if !known && len(rel) > 0 {
				return nil, &UnknownPackageError{Name: rel[0].Name, Suggestions: ix.suggest(rel[0].Name, 3)}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pkgs, err := ix.a.Resolve(requests, opt)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := &Estimate{Packages: pkgs}
	for _, p := range pkgs {
		e.Download += p.Size
		e.InstalledSize += p.InstalledSize
	}
	return e, nil
}

// suggest returns up to n indexed names closest to name by edit distance (at most a third of
// its length), else names containing it.
func (ix *Index) suggest(name string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	max := len(name)/3 + 1
	for _, e := range ix.entries {
		if abs(len(e.Name)-len(name)) > max {
			continue
		}
		if d := suggest.DistanceAtMost(name, e.Name, max); d <= max {
			cs = append(cs, cand{e.Name, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for _, c := range cs {
		if len(out) == n {
			break
		}
		out = append(out, c.name)
	}
	if len(out) == 0 {
		for _, e := range ix.Search(name, n) {
			out = append(out, e.Name)
		}
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// IndexCache is an http.RoundTripper for Client that keeps the archive's index files on disk,
// so front ends can load an archive again without the network: InRelease for MaxAge (or, when
// the mirror cannot be reached, for as long as its signature and Valid-Until are accepted) and
// by-hash indices until unused for two weeks. Client still verifies everything it reads, so a damaged cache fails
// as a damaged mirror would.
type IndexCache struct {
	Dir    string
	MaxAge time.Duration     // how long a cached InRelease is used without asking; 0: 1 hour
	Base   http.RoundTripper // nil: the client's default transport
}

var byHashRe = regexp.MustCompile(`/by-hash/SHA256/([0-9a-f]{64})$`)

// RoundTrip serves GETs of InRelease and by-hash files from the cache, fetching and storing them
// when missing or stale; everything else goes to Base.
func (c *IndexCache) RoundTrip(req *http.Request) (*http.Response, error) {
	base := c.Base
	if base == nil {
		base = defaultHTTP.Transport
	}
	u := req.URL.String()
	var file string
	var maxAge time.Duration
	switch m := byHashRe.FindStringSubmatch(req.URL.Path); {
	case req.Method != http.MethodGet:
		return base.RoundTrip(req)
	case m != nil:
		file, maxAge = filepath.Join(c.Dir, "by-hash", m[1]), -1
	case strings.HasSuffix(req.URL.Path, "/InRelease"):
		sum := sha256.Sum256([]byte(u))
		file, maxAge = filepath.Join(c.Dir, "InRelease", hex.EncodeToString(sum[:])), c.MaxAge
		if maxAge == 0 {
			maxAge = time.Hour
		}
	default:
		return base.RoundTrip(req)
	}
	st, statErr := os.Stat(file)
	if statErr == nil && (maxAge < 0 || time.Since(st.ModTime()) < maxAge) {
		if maxAge < 0 {
			now := time.Now()
			os.Chtimes(file, now, now) // in use: kept by prune
		}
		return cachedResponse(req, file)
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		if statErr == nil {
			return cachedResponse(req, file) // offline: the stale copy, still verified by Client
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, fmt.Errorf("index cache %s: %w", c.Dir, err)
	}
	if err := atomicfile.WriteFrom(file, io.LimitReader(resp.Body, DefaultLimits.Total), 0o644); err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	if maxAge < 0 {
		c.prune(filepath.Dir(file))
	}
	return cachedResponse(req, file)
}

// unusedIndex is how long an index nobody read stays in the cache: the archive publishes new
// ones daily, so the cache would otherwise grow by their size each time.
const unusedIndex = 14 * 24 * time.Hour

// prune removes the indices in dir not used for unusedIndex.
func (c *IndexCache) prune(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > unusedIndex {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func cachedResponse(req *http.Request, file string) (*http.Response, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("index cache: %w", err)
	}
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: f, ContentLength: st.Size(), Request: req}, nil
}
