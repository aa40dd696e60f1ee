package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/ota/repo"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "publish", Summary: "add a build's update to a signed update repository", Run: runPublish})
}

func runPublish(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "publish", "--repo DIR OUT_DIR | --repo DIR --refresh")
	dir := fs.String("repo", "", "update repository directory (created on first use)")
	noDelta := fs.Bool("no-delta", false, "do not make delta payloads against earlier versions")
	refresh := fs.Bool("refresh", false, "only re-sign the timestamp (for a repository served by another web server)")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --repo DIR is required", errUsage)
	}
	keys, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	if *refresh {
		if fs.NArg() != 0 {
			return fmt.Errorf("%w: --refresh takes no OUT_DIR", errUsage)
		}
		if _, err := repo.Refresh(*dir, keys, true, repo.Options{Log: env.Log}); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "re-signed the timestamp of %s (valid for %s)\n", *dir, repo.TimestampExpiry)
		return nil
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one build output directory (e.g. out/kiln-tiny-1.1.0)", errUsage)
	}
	prog, finish := env.progressFunc(common)
	pub, err := repo.Publish(ctx, *dir, keys, fs.Arg(0), repo.Options{NoDeltas: *noDelta, Log: env.Log, Progress: prog})
	finish()
	if err != nil {
		return err
	}
	t := pub.Target
	if common.JSON {
		type payload struct {
			Path    string `json:"path"`
			Version string `json:"version"`
			From    string `json:"from,omitempty"`
			Size    int64  `json:"size"`
			SHA256  string `json:"sha256"`
		}
		out := struct {
			Repo           string    `json:"repo"`
			Name           string    `json:"name"`
			Unchanged      bool      `json:"unchanged"`
			TargetsVersion int64     `json:"targets_version"`
			Target         payload   `json:"target"`
			Deltas         []payload `json:"deltas"`
		}{Repo: *dir, Name: t.Name, Unchanged: pub.Unchanged, TargetsVersion: pub.TargetsVersion,
			Target: payload{t.Path, t.Version, "", t.Size, t.SHA256}, Deltas: []payload{}}
		for _, d := range pub.Deltas {
			out.Deltas = append(out.Deltas, payload{d.Path, d.Version, d.From, d.Size, d.SHA256})
		}
		return env.printJSON(out)
	}
	if pub.Unchanged {
		fmt.Fprintf(env.Stdout, "%s %s is already published in %s\n", t.Name, t.Version, *dir)
		return nil
	}
	fmt.Fprintf(env.Stdout, "published %s %s to %s (targets version %d)\n  payload  %s (%s)\n  sha256   %s\n",
		t.Name, t.Version, *dir, pub.TargetsVersion, t.Path, units.Binary(t.Size), t.SHA256)
	for _, d := range pub.Deltas {
		fmt.Fprintf(env.Stdout, "  delta    from %s: %s (%.1f%% of the full payload)\n", d.From, units.Binary(d.Size), 100*float64(d.Size)/float64(t.Size))
	}
	if m, err := assembler.LoadManifest(filepath.Join(fs.Arg(0), "manifest.json")); err == nil && m.ISO != nil {
		fmt.Fprintf(env.Stdout, "  note     %s is read-only: a device booted from it takes no updates; flash %s to update it over the air\n",
			m.ISO.File, m.Image.File)
	}
	return nil
}
