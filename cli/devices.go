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
	fs, common := newFlags(env, "devices", "[--all] [--json] | --served [--db FILE] [--json]")
	all := fs.Bool("all", false, "also list system drives and internal disks, marked with the reason they are hidden")
	served := fs.Bool("served", false, "list the devices that reported to kiln serve instead of drives")
	db := fs.String("db", "", "with --served: the device database (default: "+defaultDBHelp+")")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	if *served {
		if *all {
			return fmt.Errorf("%w: --all lists drives; it does not go with --served", errUsage)
		}
		return listServed(ctx, env, common, *db)
	}
	if *db != "" {
		return fmt.Errorf("%w: --db goes with --served", errUsage)
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

// listServed prints the device table kept by kiln serve.
func listServed(ctx context.Context, env *Env, common *Common, flag string) error {
	path, err := deviceDBPath(flag)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no device database at %s (kiln serve makes it; give --db FILE if it runs with another): %w", path, err)
	}
	store, err := fleet.Open(ctx, path, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	ds, err := store.Devices(ctx)
	if err != nil {
		return err
	}
	if common.JSON {
		out := make([]ota.DeviceStatus, 0, len(ds))
		for _, d := range ds {
			out = append(out, d.DeviceStatus)
		}
		return env.printJSON(out)
	}
	if len(ds) == 0 {
		fmt.Fprintf(env.Stdout, "No device has talked to kiln serve yet (database %s).\n", path)
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
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
