package cli

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/atomicfile"
)

func init() {
	register(&Command{Name: "lock", Summary: "resolve a recipe's packages and inputs into kiln.lock and download them", Run: runLock})
}

func runLock(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "lock", "[--recipe FILE] [--update] [--json]")
	recipePath := fs.String("recipe", "", "recipe file (kiln.toml); default: the built-in Kiln Tiny")
	update := fs.Bool("update", false, "resolve again against the archive as it is now, replacing kiln.lock")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	r, err := loadRecipe(*recipePath)
	if err != nil {
		return err
	}
	cache, err := assembler.DefaultCache()
	if err != nil {
		return err
	}
	path := assembler.LockPath(r, cache)
	prog, finish := env.progressFunc(common)
	defer finish()
	opts := assembler.LockOptions{Cache: cache, Progress: prog}

	old, err := archive.ReadLockFile(path)
	switch {
	case err == nil && !*update:
		if err := assembler.CheckLock(r, old, path); err != nil {
			return err
		}
		if err := assembler.FetchLock(ctx, r, old, opts); err != nil {
			return err
		}
		finish()
		if common.JSON {
			return env.printJSON(old)
		}
		fmt.Fprintf(env.Stdout, "%s is up to date: %d packages, all in %s (kiln lock --update resolves again)\n",
			path, len(old.Packages), filepath.Join(cache, "sha256"))
		return nil
	case err != nil && !errors.Is(err, iofs.ErrNotExist):
		if !*update {
			return fmt.Errorf("%w (kiln lock --update replaces it)", err)
		}
		old = nil
	}
	l, err := assembler.ResolveLock(ctx, r, opts)
	if err != nil {
		return err
	}
	if err := assembler.WriteLock(path, l); err != nil {
		return err
	}
	finish()
	if common.JSON {
		return env.printJSON(l)
	}
	changes := lockChanges(old, l)
	fmt.Fprintf(env.Stdout, "wrote %s: %d packages", path, len(l.Packages))
	if old != nil {
		fmt.Fprintf(env.Stdout, ", %d changed", len(changes))
	}
	fmt.Fprintln(env.Stdout)
	for _, c := range changes {
		fmt.Fprintln(env.Stdout, "  "+c)
	}
	return nil
}

// loadRecipe loads the recipe file, or the built-in default when path is "".
func loadRecipe(path string) (*recipe.Recipe, error) {
	if path == "" {
		return recipe.Default(), nil
	}
	return recipe.Load(path)
}

// lockChanges lists what differs between two locks ("hello 2.10-2 → 2.10-3", "+ libfoo 1.0").
func lockChanges(old, l *archive.Lock) []string {
	if old == nil {
		return nil
	}
	was := map[string]string{}
	for _, p := range old.Packages {
		was[p.Name+":"+p.Arch] = p.Version
	}
	var out []string
	for _, p := range l.Packages {
		k := p.Name + ":" + p.Arch
		switch v, ok := was[k]; {
		case !ok:
			out = append(out, "+ "+p.Name+" "+p.Version)
		case v != p.Version:
			out = append(out, "  "+p.Name+" "+v+" → "+p.Version)
		}
		delete(was, k)
	}
	for _, p := range old.Packages {
		if v, ok := was[p.Name+":"+p.Arch]; ok {
			out = append(out, "- "+p.Name+" "+v)
		}
	}
	return out
}

// runPackagesDownload is `kiln packages download`: like apt-get download, the candidate of each
// named package (metapackages followed to the package holding the files, no other dependencies)
// into a directory, under apt-get's file names.
func runPackagesDownload(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "packages download", "--dir DIR [--suite S] [--mirror URL --keyring FILE] PKG...")
	src := addSourceFlags(fs)
	dir := fs.String("dir", ".", "directory the packages are written to")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: name at least one package", errUsage)
	}
	srcs, err := src.sources()
	if err != nil {
		return err
	}
	cache, err := assembler.DefaultCache()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	prog, finish := env.progressFunc(common)
	defer finish()
	l, err := assembler.ResolveInputs(ctx, srcs, *src.arch, fs.Args(), assembler.LockOptions{Cache: cache, Progress: prog})
	if err != nil {
		return err
	}
	finish()
	var names []string
	for _, p := range l.Packages {
		name := p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
		if err := linkOrCopy(filepath.Join(cache, "sha256", p.SHA256), filepath.Join(*dir, name)); err != nil {
			return err
		}
		names = append(names, name)
	}
	if common.JSON {
		return env.printJSON(names)
	}
	for _, n := range names {
		fmt.Fprintln(env.Stdout, filepath.Join(*dir, n))
	}
	return nil
}

// linkOrCopy hard-links src to dst, copying when the two are on different file systems.
func linkOrCopy(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicfile.WriteFrom(dst, f, 0o644)
}
