package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
)

func init() {
	register(&Command{Name: "build", Summary: "build a bootable disk image from a recipe", Run: runBuild})
}

// DefaultSourceDateEpoch is the timestamp given to every file in an image when SOURCE_DATE_EPOCH is
// not set: 2024-01-01T00:00:00Z. A constant rather than the clock or the recipe's mtime (which a
// checkout or a copy changes) keeps two builds of the same recipe and inputs byte-identical anywhere;
// it lies inside the FAT date range (1980–2107), which 0 would not.
const DefaultSourceDateEpoch = 1704067200

func runBuild(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "build", "[--recipe FILE] [--out DIR] [--json] [--verbose]")
	recipePath := fs.String("recipe", "", "recipe file (kiln.toml); default: the built-in Kiln Tiny")
	outDir := fs.String("out", "", "output directory; default: out/<name>-<version>")
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
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	cache, err := inputCache()
	if err != nil {
		return err
	}
	agent, err := findAgent()
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
		OutDir: *outDir, Cache: cache, Agent: agent, TrustedRoot: root,
		SourceDateEpoch: epoch, Progress: prog, Log: env.Log,
	})
	finish()
	if err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(res)
	}
	fmt.Fprintf(env.Stdout, "built %s in %.1fs\n  image     %s (%s, %s holding data)\n  sha256    %s\n  block map %s\n  manifest  %s\n  update    %s\n",
		r.Name+" "+r.Version, time.Since(start).Seconds(), res.Image, humanBytes(res.ImageSize), humanBytes(res.MappedBytes),
		res.ImageSHA256, res.Bmap, res.Manifest, res.UpdateDir)
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org) or returns the default.
func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return DefaultSourceDateEpoch, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970 as a non-negative integer", s)
	}
	return v, nil
}

// inputCache is where input packages are looked up: $KILN_CACHE, else <user cache dir>/kiln.
func inputCache() (string, error) {
	if d := os.Getenv("KILN_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("input cache: %w (set KILN_CACHE to the directory holding debs/)", err)
	}
	return filepath.Join(d, "kiln"), nil
}

// errNoAgent: the device agent binary that goes into every image was not found.
var errNoAgent = errors.New("kiln-agent not found")

// findAgent locates the kiln-agent binary: $KILN_AGENT, else next to the kiln executable.
func findAgent() (string, error) {
	if p := os.Getenv("KILN_AGENT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("KILN_AGENT: %w", err)
		}
		return p, nil
	}
	exe, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(exe), "kiln-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w next to %s: run `make build` (it writes bin/kiln-agent) or set KILN_AGENT to its path", errNoAgent, exe)
}
