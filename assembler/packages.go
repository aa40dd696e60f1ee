package assembler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/progress"
)

// LockName is the lockfile's name beside a recipe.
const LockName = "kiln.lock"

// ErrLockMismatch: kiln.lock was resolved for other packages than the recipe names now.
var ErrLockMismatch = errors.New("kiln.lock does not match the recipe")

// ErrNoArchive: the recipe names no archive and the host has no apt sources.
var ErrNoArchive = errors.New("no Debian archive configured")

// hostRoot is the root whose apt sources and keyring are used when a recipe names no mirror.
var hostRoot = "/"

// LockPath is where a recipe's lockfile lives: kiln.lock beside the recipe file, or for the
// built-in recipe <cache>/locks/<name>.lock.
func LockPath(r *recipe.Recipe, cache string) string {
	if r.Path != "" && r.Dir != "" {
		return filepath.Join(r.Dir, LockName)
	}
	return filepath.Join(cache, "locks", r.Name+".lock")
}

// inputRefs returns the input packages the recipe names by name (kernel.package, system.busybox,
// board.bootloader, board.grub for BIOS boot), sorted; those given as .deb paths are read from there.
func inputRefs(r *recipe.Recipe) []string {
	var out []string
	refs := []string{r.Kernel.Package, r.System.Busybox, r.Board.Bootloader}
	if needGRUB(r) {
		refs = append(refs, r.Board.GRUB)
	}
	if isPi(r) {
		if r.Board.Bootloader == "" {
			refs = append(refs, piStubPackage)
		}
		if bd, err := r.LoadBoard(); err == nil {
			refs = append(refs, bd.Boot.FirmwarePackage)
		}
	}
	for _, ref := range refs {
		if ref != "" && !recipe.IsPackagePath(ref) && !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	sort.Strings(out)
	return out
}

// ArchiveSources returns the archive sources of a recipe: its [archive] mirrors and suites, else
// the host's apt sources (those of archive.suites and their -updates/-security companions, when
// given). archive.keyring, when set, is the keyring of every source.
func ArchiveSources(r *recipe.Recipe) ([]archive.Source, error) {
	a := r.Archive
	if a == nil {
		a = &recipe.Archive{}
	}
	keyring := ""
	if a.Keyring != "" {
		keyring = r.Resolve(a.Keyring)
	}
	var srcs []archive.Source
	if len(a.Mirrors) > 0 {
		comps := a.Components
		if len(comps) == 0 {
			comps = []string{"main"}
		}
		comps = withComponents(comps, boardComponents(r))
		if keyring == "" {
			keyring = filepath.Join(hostRoot, archive.DefaultKeyring)
			if _, err := os.Stat(keyring); err != nil {
				return nil, fmt.Errorf("archive keyring: %s not found: set archive.keyring in the recipe to the archive's OpenPGP key file", keyring)
			}
		}
		for _, m := range a.Mirrors {
			for _, s := range a.Suites {
				srcs = append(srcs, archive.Source{URI: strings.TrimRight(m, "/"), Suite: s, Components: comps, SignedBy: keyring})
			}
		}
		return srcs, nil
	}
	host, err := archive.HostSources(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; add an [archive] section to the recipe with mirrors and suites (see docs/archive.md)", ErrNoArchive, err)
	}
	if len(host) == 0 {
		return nil, fmt.Errorf("%w: this system has no apt sources; add an [archive] section to the recipe with mirrors and suites (see docs/archive.md)", ErrNoArchive)
	}
	for _, s := range host {
		if len(a.Suites) > 0 && !slices.ContainsFunc(a.Suites, func(want string) bool { return len(archive.ForSuite([]archive.Source{s}, want)) > 0 }) {
			continue
		}
		if len(a.Components) > 0 {
			s.Components = a.Components
		}
		// The board's firmware packages may live in another component (raspi-firmware,
		// firmware-brcm80211 in non-free-firmware).
		s.Components = withComponents(s.Components, boardComponents(r))
		if keyring != "" {
			s.SignedBy = keyring
		}
		srcs = append(srcs, s)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%w: the host's apt sources have none of the suites %s; name mirrors in the recipe's [archive] section", ErrNoArchive, strings.Join(a.Suites, ", "))
	}
	return srcs, nil
}

// withComponents returns comps with extra appended, each once.
func withComponents(comps, extra []string) []string {
	out := comps
	for _, c := range extra {
		if !slices.Contains(out, c) {
			out = append(slices.Clone(out), c)
		}
	}
	return out
}

// LockOptions configure ResolveLock and FetchLock.
type LockOptions struct {
	Cache    string        // the input cache: packages go to Cache/sha256/<sha256>
	HTTP     *http.Client  // nil: a client with timeouts
	Progress progress.Func // phases "indices" and "download"
}

func (o LockOptions) fetcher() *archive.Fetcher {
	return &archive.Fetcher{Cache: o.Cache, HTTP: o.HTTP, Progress: o.Progress}
}

// ResolveLock resolves the recipe's packages (system.packages with their dependencies, as apt
// would) and its input packages (kernel, busybox, boot loader; metapackages followed to the
// package holding the files) against the recipe's archive, downloads them into the cache and
// returns the lock recording them.
func ResolveLock(ctx context.Context, r *recipe.Recipe, opts LockOptions) (*archive.Lock, error) {
	srcs, err := ArchiveSources(r)
	if err != nil {
		return nil, err
	}
	return resolve(ctx, srcs, r.DebianArch(), packageRequests(r), inputRefs(r), opts)
}

// ResolveInputs resolves and downloads packages the way a build takes its input packages: the
// candidate of each name, metapackages followed, no other dependencies (like apt-get download).
func ResolveInputs(ctx context.Context, srcs []archive.Source, arch string, names []string, opts LockOptions) (*archive.Lock, error) {
	return resolve(ctx, srcs, arch, nil, names, opts)
}

func resolve(ctx context.Context, srcs []archive.Source, arch string, reqs, inputs []string, opts LockOptions) (*archive.Lock, error) {
	a, err := (&archive.Client{Sources: srcs, Arches: []string{arch}, HTTP: opts.HTTP, Progress: opts.Progress}).Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("package indices: %w", err)
	}
	var pkgs []*archive.Package
	if len(reqs) > 0 {
		// Debian's Essential set comes with packages: their maintainer scripts rely on it
		// (dpkg, a shell, coreutils …). The tree is built with merged /usr (mergeUsr).
		if pkgs, err = a.Resolve(reqs, archive.Options{Base: true, Prefer: []string{MergedUsrPackage}}); err != nil {
			return nil, fmt.Errorf("system.packages: %w", err)
		}
	}
	f := opts.fetcher()
	if _, err := f.Fetch(ctx, archive.Items(pkgs)); err != nil {
		return nil, err
	}
	lock := archive.NewLock(arch, pkgs)
	lock.Requests, lock.Inputs = reqs, inputs
	have := map[string]bool{}
	for _, p := range pkgs {
		have[p.Name+":"+p.Arch] = true
	}
	find := func(rel deb.Relation) (*deb.Package, error) {
		p := a.Candidate(rel.Name, arch)
		if p == nil || rel.Op != "" && !deb.Satisfies(p.Version, rel.Op, rel.Version) {
			return nil, fmt.Errorf("%s: %w in the archive (%s)", rel, deb.ErrPackageMissing, suiteList(srcs))
		}
		paths, err := f.Fetch(ctx, archive.Items([]*archive.Package{p}))
		if err != nil {
			return nil, err
		}
		if !have[p.Name+":"+p.Arch] {
			have[p.Name+":"+p.Arch] = true
			lp := archive.NewLock(arch, []*archive.Package{p}).Packages[0]
			lp.Input = true
			lock.Packages = append(lock.Packages, lp)
		}
		return deb.Open(paths[0])
	}
	for _, ref := range inputs {
		if _, err := deb.ResolveWith(find, ref); err != nil {
			if errors.Is(err, deb.ErrPackageMissing) {
				return nil, fmt.Errorf("input package %s: %w; Kiln's images are built from Debian packages: name a Debian mirror, its suites and keyring in the recipe's [archive] section", ref, err)
			}
			return nil, fmt.Errorf("input package %s: %w", ref, err)
		}
	}
	sort.Slice(lock.Packages, func(i, j int) bool {
		x, y := lock.Packages[i], lock.Packages[j]
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Arch < y.Arch
	})
	return lock, nil
}

func suiteList(srcs []archive.Source) string {
	var s []string
	for _, src := range srcs {
		if !slices.Contains(s, src.Suite) {
			s = append(s, src.Suite)
		}
	}
	return strings.Join(s, ", ")
}

// WriteLock writes a lock to path atomically.
func WriteLock(path string, l *archive.Lock) error {
	data, err := l.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CheckLock tells whether l was resolved for what the recipe names now: the same package
// requests, input packages and architecture.
func CheckLock(r *recipe.Recipe, l *archive.Lock, path string) error {
	var diffs []string
	diff := func(what string, want, have []string) {
		for _, w := range want {
			if !slices.Contains(have, w) {
				diffs = append(diffs, what+" "+w+" added")
			}
		}
		for _, h := range have {
			if !slices.Contains(want, h) {
				diffs = append(diffs, what+" "+h+" removed")
			}
		}
	}
	diff("package", packageRequests(r), l.Requests)
	diff("input", inputRefs(r), l.Inputs)
	if l.Arch != r.DebianArch() {
		diffs = append(diffs, fmt.Sprintf("architecture %s, the recipe builds for %s", l.Arch, r.DebianArch()))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: %w (%s): run `kiln lock --update` to resolve it again", path, ErrLockMismatch, strings.Join(diffs, "; "))
	}
	return nil
}

// FetchLock makes sure every package of l is in the cache, downloading only what is missing
// (from the recipe's archive, else from the mirror each package was locked from): a warm cache
// needs no network.
func FetchLock(ctx context.Context, r *recipe.Recipe, l *archive.Lock, opts LockOptions) error {
	f := opts.fetcher()
	missing := &archive.Lock{Version: l.Version, Arch: l.Arch}
	for _, p := range l.Packages {
		if st, err := os.Stat(f.Path(p.SHA256)); err != nil || st.Size() != p.Size {
			missing.Packages = append(missing.Packages, p)
		}
	}
	if len(missing.Packages) == 0 {
		return nil
	}
	srcs, srcErr := ArchiveSources(r)
	items, err := missing.Items(srcs)
	if err != nil {
		if srcErr != nil {
			return fmt.Errorf("%w (%v)", err, srcErr)
		}
		return err
	}
	_, err = f.Fetch(ctx, items)
	return err
}

// lockStore finds packages of a lock in the content-addressed cache.
type lockStore struct {
	cache string
	lock  *archive.Lock
}

func (s *lockStore) path(p archive.LockedPackage) string {
	return filepath.Join(s.cache, "sha256", p.SHA256)
}

// find opens the highest locked version of rel's package that satisfies it.
func (s *lockStore) find(rel deb.Relation) (*deb.Package, error) {
	var best *archive.LockedPackage
	for i, p := range s.lock.Packages {
		if p.Name != rel.Name || rel.Op != "" && !deb.Satisfies(p.Version, rel.Op, rel.Version) {
			continue
		}
		if best == nil || deb.CompareVersions(p.Version, best.Version) > 0 {
			best = &s.lock.Packages[i]
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%s: %w in kiln.lock (run `kiln lock --update`)", rel, deb.ErrPackageMissing)
	}
	return s.open(*best)
}

func (s *lockStore) open(p archive.LockedPackage) (*deb.Package, error) {
	pkg, err := deb.Open(s.path(p))
	if err != nil {
		return nil, err
	}
	if pkg.Name != p.Name || pkg.Version != p.Version {
		return nil, fmt.Errorf("%s: holds %s %s where kiln.lock says %s %s: the lock or the cache is damaged",
			s.path(p), pkg.Name, pkg.Version, p.Name, p.Version)
	}
	return pkg, nil
}

// packageStore returns where the build finds its packages: the lockfile's set in the cache
// (resolved and written first when there is no lockfile), or nil when the recipe installs no
// packages and its input packages are all in the hand-filled Cache/debs (the layout of Kiln
// before it fetched its own inputs).
func (b *builder) packageStore(ctx context.Context, debs string) (*lockStore, error) {
	r := b.r
	path := b.opts.Lock
	if path == "" {
		path = LockPath(r, b.opts.Cache)
	}
	lopts := LockOptions{Cache: b.opts.Cache, HTTP: b.opts.HTTP, Progress: b.prog}
	l, err := archive.ReadLockFile(path)
	if err == nil && b.opts.Lock == "" && r.Path == "" && CheckLock(r, l, path) != nil {
		// The built-in recipe's own lock in the cache, from a Kiln whose recipe differed: resolve
		// again rather than ask the user to.
		err = fs.ErrNotExist
	}
	switch {
	case err == nil:
		if err := CheckLock(r, l, path); err != nil {
			return nil, err
		}
		if err := FetchLock(ctx, r, l, lopts); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if len(r.System.Packages) == 0 && inDebs(debs, inputRefs(r), r.DebianArch()) {
			return nil, nil
		}
		b.prog.Report(progress.Event{Phase: PhaseInputs, Message: "resolving packages"})
		if l, err = ResolveLock(ctx, r, lopts); err != nil {
			return nil, err
		}
		if err := WriteLock(path, l); err != nil {
			return nil, err
		}
		b.log.WithField("lock", path).Info("packages resolved and locked")
	default:
		return nil, err
	}
	return &lockStore{cache: b.opts.Cache, lock: l}, nil
}

// inDebs reports whether every named package is in the directory of hand-downloaded .debs, built
// for arch (or for all).
func inDebs(debs string, names []string, arch string) bool {
	for _, n := range names {
		p, err := deb.Resolve(debs, n)
		if err != nil || (p.Arch != arch && p.Arch != "all") {
			return false
		}
	}
	return true
}
