package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
)

func init() {
	register(&Command{Name: "rollout", Summary: "roll a published version out in stages; hold devices on a version or move them to a channel", Run: runRollout})
}

const rolloutSynopsis = `[--db FILE] [--json]                       list rollouts, holds and channels
       kiln rollout [--db FILE] [--max-failures 20%] [--min-devices 1] VERSION 10%|50%|100%|pause|resume
       kiln rollout [--db FILE] hold DEVICE VERSION | release DEVICE | channel DEVICE CHANNEL`

func runRollout(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "rollout", rolloutSynopsis)
	db := fs.String("db", "", "the device database kiln serve uses (default: "+defaultDBHelp+")")
	maxFail := fs.String("max-failures", "", "pause by itself when more than this share of the devices that installed the version rolled back (default 20%)")
	minDev := fs.Int("min-devices", 0, "… once at least this many devices installed it (default 1)")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	store, err := openDeviceDB(ctx, *db)
	if err != nil {
		return err
	}
	defer store.Close()
	a := fs.Args()
	if len(a) == 0 {
		return listRollouts(ctx, env, common, store)
	}
	switch a[0] {
	case "hold", "release", "channel":
		return setPolicy(ctx, env, store, a)
	}
	if len(a) != 2 {
		return fmt.Errorf("%w: give VERSION and a share (10%%), pause or resume", errUsage)
	}
	version, what := a[0], a[1]
	if err := ota.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: version %q: %v", errUsage, version, err)
	}
	r, err := store.Rollout(ctx, version)
	if errors.Is(err, fleet.ErrNoRollout) {
		r = fleet.NewRollout(version, fleet.AllDevices)
	} else if err != nil {
		return err
	}
	switch what {
	case "pause":
		r.Paused, r.Reason = true, "paused by the owner (kiln rollout "+version+" resume)"
	case "resume":
		r.Paused, r.Reason = false, ""
	default:
		if r.Share, err = fleet.ParseShare(what); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		r.Paused, r.Reason = false, ""
	}
	if err := applyPauseFlags(&r, *maxFail, *minDev); err != nil {
		return err
	}
	if err := setRollout(ctx, store, r); err != nil {
		return err
	}
	if r, err = store.Rollout(ctx, version); err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(r)
	}
	fmt.Fprintf(env.Stdout, "%s: %s\n", version, r.Status())
	return nil
}

// applyPauseFlags sets the automatic pause from --max-failures and --min-devices, if given.
func applyPauseFlags(r *fleet.Rollout, maxFail string, minDev int) error {
	if maxFail != "" {
		bp, err := fleet.ParseShare(maxFail)
		if err != nil {
			return fmt.Errorf("%w: --max-failures: %v", errUsage, err)
		}
		r.MaxFailures = bp
	}
	if minDev < 0 {
		return fmt.Errorf("%w: --min-devices must be 1 or more", errUsage)
	}
	if minDev > 0 {
		r.MinDevices = minDev
	}
	return nil
}

// setRollout stores r as changed now.
func setRollout(ctx context.Context, store fleet.Store, r fleet.Rollout) error {
	r.Updated = time.Now()
	return store.SetRollout(ctx, r)
}

// setPolicy runs hold, release and channel.
func setPolicy(ctx context.Context, env *Env, store fleet.Store, a []string) error {
	want := map[string]int{"hold": 3, "release": 2, "channel": 3}[a[0]]
	if len(a) != want {
		return fmt.Errorf("%w: kiln rollout hold DEVICE VERSION | release DEVICE | channel DEVICE CHANNEL", errUsage)
	}
	p, err := store.Policy(ctx, a[1])
	if err != nil {
		return err
	}
	if !knownDevice(ctx, store, a[1]) {
		fmt.Fprintf(env.Stderr, "kiln rollout: note: no device %s has talked to kiln serve yet (kiln devices --served lists them)\n", a[1])
	}
	var done string
	switch a[0] {
	case "hold":
		p.Hold, done = a[2], fmt.Sprintf("%s is held on %s: nothing newer is offered to it", a[1], a[2])
	case "release":
		p.Hold, done = "", a[1]+" follows the rollouts again"
	case "channel":
		p.Channel, done = a[2], fmt.Sprintf("%s follows channel %s", a[1], a[2])
		if a[2] == "-" {
			p.Channel, done = "", a[1]+" follows the channel of its image again"
		}
	}
	if err := store.SetPolicy(ctx, p); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	fmt.Fprintln(env.Stdout, done)
	return nil
}

func knownDevice(ctx context.Context, store fleet.Store, id string) bool {
	ds, err := store.Devices(ctx)
	if err != nil {
		return true // the error shows elsewhere; no note
	}
	for _, d := range ds {
		if d.ID == id {
			return true
		}
	}
	return false
}

func listRollouts(ctx context.Context, env *Env, common *Common, store fleet.Store) error {
	rs, err := store.Rollouts(ctx)
	if err != nil {
		return err
	}
	ps, err := store.Policies(ctx)
	if err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(struct {
			Rollouts []fleet.Rollout `json:"rollouts"`
			Devices  []fleet.Policy  `json:"devices"`
		}{append([]fleet.Rollout{}, rs...), append([]fleet.Policy{}, ps...)})
	}
	printRollouts(env.Stdout, rs, ps)
	return nil
}

// printRollouts writes the rollouts and the devices' holds and channels as tables.
func printRollouts(w io.Writer, rs []fleet.Rollout, ps []fleet.Policy) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "No staged rollouts: every published version goes to every device (kiln rollout VERSION 10% stages one).")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSHARE\tINSTALLED\tROLLED BACK\tSTATE")
		for _, r := range rs {
			state := "rolling out"
			if r.Paused {
				state = r.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Version, fleet.FormatShare(r.Share), r.Tried, r.RolledBack, state)
		}
		tw.Flush()
	}
	if len(ps) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nDEVICE\tHELD ON\tCHANNEL")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, dash(p.Hold), dash(p.Channel))
		}
		tw.Flush()
	}
}
