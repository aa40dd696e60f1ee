package cli

import (
	"bufio"
	"context"
	"errors"
	"runtime/debug"

	"fmt"
	"strings"

	"github.com/kilnproject/kiln/flasher"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "flash", Summary: "write an image to USB sticks or SD cards and verify it", Run: runFlash})
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func runFlash(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "flash", "(--image FILE|URL | --catalog SRC --os NAME) --device DEV [--device DEV2 ...] [--yes] [--no-verify]")
	src := addImageFlags(fs)
	var apply []func(*FlashPlan) error
	for _, ext := range flashExtensions {
		apply = append(apply, ext(fs))
	}
	var devices listFlag
	fs.Var(&devices, "device", "target drive (repeat for several drives flashed at once); see 'kiln devices'")
	bmapPath := fs.String("bmap", "", "block map (default: IMAGE.bmap beside the image when present)")
	noBmap := fs.Bool("no-bmap", false, "write every byte even when a block map exists")
	noVerify := fs.Bool("no-verify", false, "skip reading the drive back to verify it")
	yes := fs.Bool("yes", false, "do not ask for confirmation (the safety rules still apply)")
	allowInternal := fs.Bool("allow-internal", false, "allow internal non-removable disks; you must type the disk's model to confirm")
	eject := fs.Bool("eject", false, "eject the drives when done")
	sum := fs.Bool("print-sha256", false, "print the sha256 of the uncompressed image (computed while writing)")
	customise := flashSettingsFlags(fs)
	decoder := fs.String("decoder", "", "gzip/xz decoder: exec (the igzip/pigz and xz programs), go (built in), or igzip, pigz, xz; default: the fastest installed")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	// Keep the garbage collector tight: a flash is a long stream of large buffers.
	debug.SetMemoryLimit(192 << 20)
	devices = append(devices, fs.Args()...)
	if len(devices) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: --image (or --catalog and --os) and at least one --device are required", errUsage)
	}
	opts := flasher.Options{Bmap: *bmapPath, NoBmap: *noBmap, NoVerify: *noVerify, AllowInternal: *allowInternal,
		Eject: *eject, HashImage: *sum, Decoder: *decoder, Log: env.Log, Confirm: map[string]string{}}
	plan, err := src.plan(ctx, env, &opts)
	if err != nil {
		return err
	}
	for _, f := range apply {
		if err := f(plan); err != nil {
			return err
		}
	}
	image := &plan.Image
	declared := ""
	if plan.OS != nil {
		declared = plan.OS.InitFormat
	}
	if err := customise(env, &opts, declared); err != nil {
		return err
	}
	in := bufio.NewReader(env.Stdin)
	if *allowInternal {
		// Typing the model is required even with --yes: it is the one check that the user means
		// this very disk.
		opts.AllowInternal = false
		for _, p := range devices {
			d, err := flasher.Lookup(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if !d.Internal {
				continue
			}
			fmt.Fprintf(env.Stderr, "%s is an internal disk (%s). Everything on it will be erased.\nType its model %q to confirm: ", p, d.Description(), flasher.ConfirmText(d))
			line, _ := in.ReadString('\n')
			opts.Confirm[p] = strings.TrimSpace(line)
		}
		opts.AllowInternal = true
	}
	job, err := flasher.PrepareContext(ctx, *image, devices, opts)
	if err != nil {
		return err
	}
	if *yes {
		for _, d := range job.Targets {
			if mps := d.RemovableMounts(); len(mps) > 0 {
				fmt.Fprintf(env.Stderr, "%s: unmounting %s\n", d.Path, strings.Join(mps, ", "))
			}
		}
	} else {
		if plan.OS != nil {
			fmt.Fprintf(env.Stderr, "%s (from %s)\n", plan.OS.Title(), plan.Catalog)
		}
		fmt.Fprintf(env.Stderr, "Image %s (%s", job.Image.Path, job.Image.Format)
		if job.Image.Size >= 0 {
			fmt.Fprintf(env.Stderr, ", %s", units.Decimal(job.Image.Size))
		}
		if _, total := job.Image.Downloaded(); total > 0 {
			fmt.Fprintf(env.Stderr, ", streamed from a %s download", units.Decimal(total))
		}
		if opts.SHA256 != "" || opts.DownloadSHA256 != "" || opts.ImageSHA256 != "" {
			fmt.Fprint(env.Stderr, ", sha256 checked")
		}
		if job.Bmap != nil {
			fmt.Fprintf(env.Stderr, ", block map: %s of data", units.Decimal(job.Bmap.MappedBytes()))
		}
		fmt.Fprintln(env.Stderr, ")")
		if note := job.ImageNote(); note != "" {
			fmt.Fprintf(env.Stderr, "Note: %s\n", note)
		}
		fmt.Fprintln(env.Stderr, "will ERASE everything on:")
		for _, d := range job.Targets {
			fmt.Fprintf(env.Stderr, "  %s  %s\n", d.Path, d.Description())
			if mps := d.RemovableMounts(); len(mps) > 0 {
				fmt.Fprintf(env.Stderr, "      mounted at %s: Kiln unmounts it first\n", strings.Join(mps, ", "))
			}
		}
		fmt.Fprint(env.Stderr, "Continue? [y/N] ")
		line, _ := in.ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("not confirmed; nothing was written")
		}
	}
	var paths []string
	for _, d := range job.Targets {
		paths = append(paths, d.Path)
	}
	f, finish := env.flashProgress(common, paths)
	job.SetProgress(f)
	results, err := job.Run(ctx)
	finish()
	for _, r := range results {
		for _, w := range r.Warnings {
			fmt.Fprintf(env.Stderr, "warning: %s: %s\n", r.Device, w)
		}
	}
	if common.JSON {
		if jerr := env.printJSON(results); jerr != nil {
			return jerr
		}
	} else {
		for _, r := range results {
			switch {
			case r.Err != nil:
				fmt.Fprintf(env.Stderr, "%s: FAILED: %v\n", r.Device, r.Err)
			case r.Verified:
				fmt.Fprintf(env.Stdout, "%s: written and verified (%s in %.1f s)\n", r.Device, units.Decimal(r.Written), r.Seconds)
				if r.Customised != "" {
					fmt.Fprintf(env.Stdout, "%s: %s\n", r.Device, r.Customised)
				}
				if r.SHA256 != "" && *sum {
					fmt.Fprintf(env.Stdout, "%s: image sha256 %s\n", r.Device, r.SHA256)
				}
				if r.SHA256 != "" && (opts.SHA256 != "" || opts.DownloadSHA256 != "" || opts.ImageSHA256 != "") {
					fmt.Fprintf(env.Stdout, "%s: sha256 matches the published one\n", r.Device)
				}
			default:
				fmt.Fprintf(env.Stdout, "%s: written, not verified (%s in %.1f s)\n", r.Device, units.Decimal(r.Written), r.Seconds)
			}
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(env.Stderr, "cancelled: the drives hold an incomplete image; flash them again before use")
		}
		failed := 0
		for _, r := range results {
			if r.Err != nil {
				failed++
			}
		}
		return fmt.Errorf("%d of %d drives failed: %w", failed, len(results), err)
	}
	return nil
}
