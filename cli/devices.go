package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "devices", Summary: "list the drives an image can be flashed to (--served: the devices kiln serve has seen)", Run: runDevices})
}

type deviceJSON struct {
	flasher.Device
	Hidden       bool   `json:"hidden"`
	HiddenReason string `json:"hidden_reason,omitempty"`
}

func runDevices(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "devices", "[--all] [--json] | --served [--db FILE] [--state STATE] [--version VERSION] [--history ID] [--json]")
	all := fs.Bool("all", false, "also list system drives and internal disks, marked with the reason they are hidden")
	served := fs.Bool("served", false, "list the devices that reported to kiln serve instead of drives")
	db := fs.String("db", "", "with --served: the device database (default: "+defaultDBHelp+")")
	var f servedFilter
	fs.StringVar(&f.state, "state", "", "with --served: only devices in this state (healthy, rolled-back, update-available …)")
	fs.StringVar(&f.version, "version", "", "with --served: only devices running, installing or offered this version")
	fs.StringVar(&f.history, "history", "", "with --served: print this device's history instead")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	if *served {
		if *all {
			return fmt.Errorf("%w: --all lists drives; it does not go with --served", errUsage)
		}
		return listServed(ctx, env, common, *db, f)
	}
	if *db != "" || f != (servedFilter{}) {
		return fmt.Errorf("%w: --db, --state, --version and --history go with --served", errUsage)
	}
	ds, err := flasher.List(*all)
	if err != nil {
		return err
	}
	if common.JSON {
		out := make([]deviceJSON, 0, len(ds))
		for _, d := range ds {
			h, why := d.Hidden()
			out = append(out, deviceJSON{Device: d, Hidden: h, HiddenReason: why})
		}
		return env.printJSON(out)
	}
	if len(ds) == 0 {
		fmt.Fprintln(env.Stdout, "No removable drives found. Insert a USB stick or SD card (or use --all to see every drive).")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSIZE\tTRANSPORT\tMODEL\tSERIAL\tNOTE")
	for _, d := range ds {
		model := strings.TrimSpace(d.Vendor + " " + d.Model)
		if model == "" && d.USB != nil {
			model = strings.TrimSpace(d.USB.Manufacturer + " " + d.USB.Product)
		}
		if model == "" && d.BackingFile != "" {
			model = d.BackingFile
		}
		note := ""
		if h, why := d.Hidden(); h {
			note = "hidden: " + why
		} else if len(d.Mounts) > 0 {
			note = "mounted at " + strings.Join(d.Mounts, ", ") + " (unmounted before flashing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, units.Decimal(d.Size), d.Transport, dash(model), dash(d.Serial), note)
	}
	return tw.Flush()
}

// servedFilter chooses the rows of kiln devices --served.
type servedFilter struct {
	state, version, history string
}

func (f servedFilter) match(d ota.DeviceStatus) bool {
	return (f.state == "" || d.State == f.state) &&
		(f.version == "" || d.Version == f.version || d.Target == f.version || d.Offered == f.version)
}

// listServed prints the device table kept by kiln serve.
func listServed(ctx context.Context, env *Env, common *Common, flag string, f servedFilter) error {
	path, err := deviceDBPath(flag)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil && !fleet.IsPostgres(path) {
		return fmt.Errorf("no device database at %s (kiln serve makes it; give --db FILE if it runs with another): %w", path, err)
	}
	store, err := fleet.Open(ctx, path, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	if f.history != "" {
		return printHistory(ctx, env, common, store, f.history)
	}
	all, err := store.Devices(ctx)
	if err != nil {
		return err
	}
	var ds []fleet.Device
	for _, d := range all {
		if f.match(d.DeviceStatus) {
			ds = append(ds, d)
		}
	}
	if common.JSON {
		out := make([]ota.DeviceStatus, 0, len(ds))
		for _, d := range ds {
			out = append(out, d.DeviceStatus)
		}
		return env.printJSON(out)
	}
	switch {
	case len(all) == 0:
		fmt.Fprintf(env.Stdout, "No device has talked to kiln serve yet (database %s).\n", store.Name())
		return nil
	case len(ds) == 0:
		fmt.Fprintf(env.Stdout, "None of the %d devices matches.\n", len(all))
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tVERSION\tSTATE\tLAST SEEN\tADDRESS")
	for _, d := range ds {
		state := d.State
		if d.Target != "" && d.Target != d.Version {
			state += " (" + d.Target + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, dash(d.Name), dash(d.Version), dash(state),
			d.LastSeen.Local().Format(time.DateTime), dash(d.Addr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rs, err := store.Rollouts(ctx)
	if err != nil {
		return err
	}
	ps, err := store.Policies(ctx)
	if err != nil {
		return err
	}
	if len(rs)+len(ps) > 0 {
		fmt.Fprintln(env.Stdout)
		printRollouts(env.Stdout, rs, ps)
	}
	return nil
}

// printHistory prints one device's history, newest first.
func printHistory(ctx context.Context, env *Env, common *Common, store fleet.Store, id string) error {
	evs, err := store.History(ctx, id, 0)
	if err != nil {
		return err
	}
	if common.JSON {
		return env.printJSON(append([]fleet.Event{}, evs...))
	}
	if len(evs) == 0 {
		fmt.Fprintf(env.Stdout, "No history of device %s (kiln devices --served lists the devices).\n", id)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTATE\tVERSION\tTARGET\tMESSAGE")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.State, dash(e.Version), dash(e.Target), e.Message)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
