package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/repo"

	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "publish", Summary: "add a build's update (and its flashable disk image, listed in the repository's OS catalogue) to a signed update repository", Run: runPublish})
}

func runPublish(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "publish", "--repo DIR [--rollout 10%] OUT_DIR | --repo DIR --refresh")
	dir := fs.String("repo", "", "update repository directory (created on first use)")
	noDelta := fs.Bool("no-delta", false, "do not make delta payloads against earlier versions")
	noImage := fs.Bool("no-image", false, "do not publish the flashable disk image (images/NAME-VERSION.img.zst, listed in catalog.json)")
	refresh := fs.Bool("refresh", false, "only re-sign the timestamp (for a repository served by another web server)")
	rollout := fs.String("rollout", "", "offer the version to this share of devices only, e.g. 10% (raise it with kiln rollout)")
	db := fs.String("db", "", "with --rollout: the device database kiln serve uses (default: "+defaultDBHelp+")")
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
	if *db != "" && *rollout == "" {
		return fmt.Errorf("%w: --db goes with --rollout", errUsage)
	}
	var undo func()
	if *rollout != "" {
		// The rollout is stored before the metadata names the version, so that no server
		// offers it to every device in between.
		if undo, err = stageRollout(ctx, env, *db, fs.Arg(0), *rollout); err != nil {
			return err
		}
	}
	prog, finish := env.progressFunc(common)
	pub, err := repo.Publish(ctx, *dir, keys, fs.Arg(0), repo.Options{NoDeltas: *noDelta, Log: env.Log, Progress: prog})
	finish()
	if err != nil {
		if undo != nil {
			undo()
		}
		return err
	}
	var img *repo.PublishedImage
	if !*noImage {
		prog, finish := env.progressFunc(common)
		img, err = publishImage(ctx, env, *dir, fs.Arg(0), pub.Target.Board, prog)
		finish()
		if err != nil {
			return fmt.Errorf("%s %s is published as an update, but not its disk image: %w", pub.Target.Name, pub.Target.Version, err)
		}
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
			Root           *payload  `json:"root,omitempty"`
			Deltas         []payload `json:"deltas"`
			Image          *payload  `json:"image,omitempty"`
		}{Repo: *dir, Name: t.Name, Unchanged: pub.Unchanged, TargetsVersion: pub.TargetsVersion,
			Target: payload{t.Path, t.Version, "", t.Size, t.SHA256}, Deltas: []payload{}}
		if r := pub.Root; r != nil {
			out.Root = &payload{r.Path, r.Version, "", r.Size, r.SHA256}
		}
		for _, d := range pub.Deltas {
			out.Deltas = append(out.Deltas, payload{d.Path, d.Version, d.From, d.Size, d.SHA256})
		}
		if img != nil {
			out.Image = &payload{img.File, t.Version, "", img.Entry.DownloadSize, img.Entry.DownloadSHA256}
		}
		return env.printJSON(out)
	}
	if img != nil && !img.Unchanged {
		fmt.Fprintf(env.Stdout, "  image    %s (%s, %s uncompressed), listed in %s\n", img.File,
			units.Binary(img.Entry.DownloadSize), units.Binary(img.Entry.ExtractSize), filepath.Join(*dir, repo.CatalogFile))
	}
	if pub.Unchanged {
		fmt.Fprintf(env.Stdout, "%s %s is already published in %s\n", t.Name, t.Version, *dir)
		return nil
	}
	fmt.Fprintf(env.Stdout, "published %s %s to %s (targets version %d)\n  payload  %s (%s)\n  sha256   %s\n",
		t.Name, t.Version, *dir, pub.TargetsVersion, t.Path, units.Binary(t.Size), t.SHA256)
	if r := pub.Root; r != nil {
		fmt.Fprintf(env.Stdout, "  root     %s (%s)\n", r.Path, units.Binary(r.Size))
	}
	if *rollout != "" {
		fmt.Fprintf(env.Stdout, "  rollout  %s of devices (kiln rollout %s 50%%|100%%|pause)\n", *rollout, t.Version)
	}
	for _, d := range pub.Deltas {
		what := "payload"
		if d.Full != t.Path {
			what = "root"
		}
		fmt.Fprintf(env.Stdout, "  delta    from %s: %s (%.1f%% of the full %s)\n", d.From, units.Binary(d.Size), 100*float64(d.Size)/float64(d.FullSize), what)
	}
	if m, _, err := buildManifest(fs.Arg(0)); err == nil && m.ISO != nil {
		fmt.Fprintf(env.Stdout, "  note     %s is read-only: a device booted from it takes no updates; flash %s to update it over the air\n",
			m.ISO.File, m.Image.File)
	}
	return nil
}

// buildManifest loads the manifest of the build whose output directory (or its update
// directory) is dir, and returns the output directory.
func buildManifest(dir string) (*assembler.Manifest, string, error) {
	m, err := assembler.LoadManifest(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, fs.ErrNotExist) && filepath.Base(filepath.Clean(dir)) == "update" {
		dir = filepath.Dir(filepath.Clean(dir))
		m, err = assembler.LoadManifest(filepath.Join(dir, "manifest.json"))
	}
	return m, dir, err
}

// publishImage publishes the build's disk image into the repository's OS catalogue. A build
// without a manifest or disk image (an update bundle alone) publishes none.
func publishImage(ctx context.Context, env *Env, dir, out, board string, prog progress.Func) (*repo.PublishedImage, error) {
	img, err := repo.BuildImage(out, board)
	if err != nil || img == nil {
		return nil, err
	}
	return repo.PublishImage(ctx, dir, *img, repo.Options{Log: env.Log, Progress: prog})
}

// stageRollout stores the rollout of the bundle's version at share; undo forgets it again if
// it did not exist before.
func stageRollout(ctx context.Context, env *Env, db, bundleDir, share string) (undo func(), err error) {
	bp, err := fleet.ParseShare(share)
	if err != nil {
		return nil, fmt.Errorf("%w: --rollout: %v", errUsage, err)
	}
	b, _, err := repo.ReadBundle(bundleDir)
	if err != nil {
		return nil, err
	}
	store, err := openDeviceDB(ctx, db)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	r, err := store.Rollout(ctx, b.Version)
	existed := err == nil
	if errors.Is(err, fleet.ErrNoRollout) {
		r = fleet.NewRollout(b.Version, bp)
	} else if err != nil {
		return nil, err
	}
	r.Share, r.Paused, r.Reason = bp, false, ""
	if err := setRollout(ctx, store, r); err != nil {
		return nil, err
	}
	return func() {
		if existed {
			return
		}
		store, err := openDeviceDB(context.WithoutCancel(ctx), db)
		if err == nil {
			err = store.DeleteRollout(context.WithoutCancel(ctx), b.Version)
			store.Close()
		}
		if err != nil {
			env.Log.WithError(err).Warn("forget the rollout of an unpublished version")
		}
	}, nil
}
