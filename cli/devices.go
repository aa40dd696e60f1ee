package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kilnproject/kiln/flasher"

	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "devices", Summary: "list the drives an image can be flashed to", Run: runDevices})
}

type deviceJSON struct {
	flasher.Device
	Hidden       bool   `json:"hidden"`
	HiddenReason string `json:"hidden_reason,omitempty"`
}

func runDevices(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "devices", "[--all] [--json]")
	all := fs.Bool("all", false, "also list system drives and internal disks, marked with the reason they are hidden")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
