package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "build", Summary: "build a bootable disk image from a recipe", Run: runBuild})
}

func runBuild(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "build", "[--recipe FILE] [--lock FILE] [--out DIR] [--format disk|iso] [--json] [--verbose]")
	recipePath := fs.String("recipe", "", "recipe file (kiln.toml); default: the built-in Kiln Tiny")
	lockFile := fs.String("lock", "", "lockfile; default: kiln.lock beside the recipe (written after resolving when missing)")
	outDir := fs.String("out", "", "output directory; default: out/<name>-<version>")
	format := fs.String("format", "disk", "disk: the disk image; iso: the disk image and a hybrid ISO (CD/DVD and USB stick), as [outputs] iso = true")
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(env.Stderr, `
Environment:
  KILN_CACHE         input cache (downloaded packages in sha256/, the built-in recipe's lock in
                     locks/, hand-downloaded .debs in debs/); default: <user cache dir>/kiln
  KILN_AGENT         the kiln-agent binary for the image; default: next to kiln
  SOURCE_DATE_EPOCH  timestamp of the image's files; default: 1704067200 (reproducible)
  KILN_KEYS          update signing keys (the image trusts their root); default: <config dir>/kiln/keys
`)
	}
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}

	var (
		r   *recipe.Recipe
		err error
	)
	if *recipePath == "" {
		r = recipe.Default()
	} else if r, err = recipe.Load(*recipePath); err != nil {
		return err
	}
	switch *format {
	case "disk":
	case "iso":
		r.Outputs.ISO = true
		if err := r.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--format %q: use disk or iso", *format)
	}
	epoch, err := assembler.SourceDateEpoch()
	if err != nil {
		return err
	}
	cache, err := assembler.DefaultCache()
	if err != nil {
		return err
	}
	agent, err := assembler.FindAgent()
	if err != nil {
		return err
	}
	root, err := trustedRoot(env)
	if err != nil {
		return fmt.Errorf("OTA trust root: %w", err)
	}
	if *outDir == "" {
		*outDir = filepath.Join("out", r.Name+"-"+r.Version)
	}

	prog, finish := env.progressFunc(common)
	start := time.Now()
	res, err := assembler.Build(ctx, r, assembler.Options{
		OutDir: *outDir, Cache: cache, Lock: *lockFile, Agent: agent, TrustedRoot: root,
		SourceDateEpoch: epoch, Progress: prog, Log: env.Log,
	})
	finish()
	if err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(res)
	}
	fmt.Fprintf(env.Stdout, "built %s in %.1fs\n  image     %s (%s, %s holding data)\n  sha256    %s\n  block map %s\n  manifest  %s\n  sbom      %s\n  update    %s\n",
		r.Name+" "+r.Version, time.Since(start).Seconds(), res.Image, units.Binary(res.ImageSize), units.Binary(res.MappedBytes),
		res.ImageSHA256, res.Bmap, res.Manifest, res.SBOM, res.UpdateDir)
	if res.ISO != "" {
		fmt.Fprintf(env.Stdout, "  iso       %s (read-only: boots from CD/DVD or USB stick, takes no updates)\n", res.ISO)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(env.Stdout, "  warning   %s\n", w)
	}
	return nil
}
