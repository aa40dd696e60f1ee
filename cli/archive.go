package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "packages", Summary: "resolve Debian packages with their dependencies, lock and fetch them", Run: runPackages})
}

const packagesUsage = "resolve [flags] PKG...   |   fetch --lock FILE [flags]   |   download --dir DIR [flags] PKG..."

func runPackages(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: kiln packages %s", errUsage, packagesUsage)
	}
	switch args[0] {
	case "resolve":
		return runPackagesResolve(ctx, env, args[1:])
	case "fetch":
		return runPackagesFetch(ctx, env, args[1:])
	case "download":
		return runPackagesDownload(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(env.Stdout, "Usage: kiln packages %s\n", packagesUsage)
		return nil
	}
	return fmt.Errorf("%w: unknown sub-command %q (kiln packages %s)", errUsage, args[0], packagesUsage)
}

// sourceFlags are the flags naming where packages come from.
type sourceFlags struct {
	arch, suite, mirror, components, keyring *string
}

func addSourceFlags(fs interface {
	String(name, value, usage string) *string
}) sourceFlags {
	return sourceFlags{
		arch:       fs.String("arch", "amd64", "Debian architecture"),
		suite:      fs.String("suite", "", "suite, e.g. bookworm (its -updates and -security suites come along); default: every suite of the host's apt sources"),
		mirror:     fs.String("mirror", "", "mirror URL; default: the host's apt sources"),
		components: fs.String("components", "", "components, comma-separated (default: main with --mirror, else the host sources' own), e.g. main,non-free-firmware"),
		keyring:    fs.String("keyring", archive.DefaultKeyring, "archive keyring (with --mirror)"),
	}
}

func (f sourceFlags) sources() ([]archive.Source, error) {
	if *f.mirror != "" {
		if *f.suite == "" {
			return nil, fmt.Errorf("%w: --mirror needs --suite", errUsage)
		}
		comps := "main"
		if *f.components != "" {
			comps = *f.components
		}
		return []archive.Source{{URI: strings.TrimRight(*f.mirror, "/"), Suite: *f.suite,
			Components: strings.Split(comps, ","), SignedBy: *f.keyring}}, nil
	}
	all, err := archive.HostSources("/")
	if err != nil {
		return nil, err
	}
	srcs := archive.ForSuite(all, *f.suite)
	if len(srcs) == 0 {
		return nil, fmt.Errorf("the host's apt sources have no suite %q: name one they have, or give --mirror and --suite", *f.suite)
	}
	if *f.components != "" {
		for i := range srcs {
			srcs[i].Components = strings.Split(*f.components, ",")
		}
	}
	return srcs, nil
}

func runPackagesResolve(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "packages resolve", "[--arch A] [--suite S] [--mirror URL --keyring FILE] [--base] [--lock FILE] PKG...")
	src := addSourceFlags(fs)
	base := fs.Bool("base", false, "add Debian's Essential set, on merged /usr, as a package image installs it")
	lockFile := fs.String("lock", "", "write the resolved set to this lockfile (e.g. kiln.lock)")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	if fs.NArg() == 0 && !*base {
		return fmt.Errorf("%w: name at least one package", errUsage)
	}
	srcs, err := src.sources()
	if err != nil {
		return err
	}
	prog, finish := env.progressFunc(common)
	a, err := (&archive.Client{Sources: srcs, Arches: []string{*src.arch}, Progress: prog}).Load(ctx)
	finish()
	if err != nil {
		return err
	}
	opt := archive.Options{Base: *base}
	if *base {
		opt.Prefer = []string{assembler.MergedUsrPackage}
	}
	pkgs, err := a.Resolve(fs.Args(), opt)
	if err != nil {
		return err
	}
	lock := archive.NewLock(*src.arch, pkgs)
	if *lockFile != "" {
		data, err := lock.Marshal()
		if err != nil {
			return err
		}
		if err := os.WriteFile(*lockFile, data, 0o644); err != nil {
			return fmt.Errorf("lockfile: %w", err)
		}
	}
	if common.JSON {
		return env.printJSON(lock)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tVERSION\tARCH\tSUITE\tSIZE")
	var total int64
	for _, p := range pkgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Arch, p.Origin.Suite, units.Binary(p.Size))
		total += p.Size
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "%d packages, %s to download\n", len(pkgs), units.Binary(total))
	return nil
}

func runPackagesFetch(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "packages fetch", "--lock FILE [--suite S] [--mirror URL] [--jobs N]")
	src := addSourceFlags(fs)
	lockFile := fs.String("lock", "kiln.lock", "lockfile naming the packages")
	jobs := fs.Int("jobs", 4, "parallel downloads")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	lock, err := archive.ReadLockFile(*lockFile)
	if err != nil {
		return err
	}
	srcs, err := src.sources()
	if err != nil {
		return err
	}
	items, err := lock.Items(srcs)
	if err != nil {
		return err
	}
	cache, err := assembler.DefaultCache()
	if err != nil {
		return err
	}
	prog, finish := env.progressFunc(common)
	f := &archive.Fetcher{Cache: cache, Jobs: *jobs, Progress: prog}
	paths, err := f.Fetch(ctx, items)
	finish()
	if err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(paths)
	}
	fmt.Fprintf(env.Stdout, "%d packages in %s\n", len(paths), f.Path(""))
	return nil
}
