package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/internal/units"
)

func init() {
	register(&Command{Name: "catalog", Summary: "list the images of an OS catalogue (Raspberry Pi Imager's format)", Run: runCatalog})
}

func runCatalog(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "catalog", "[--source URL|FILE] [--device NAME|TAG] [--search TEXT] [--json]")
	src := fs.String("source", catalog.ImagerURL, "catalogue: a URL or a file in Raspberry Pi Imager's repository JSON")
	device := fs.String("device", "", "only images for this device: its name in the catalogue or a tag such as pi4, pi5-64bit")
	search := fs.String("search", "", "only images whose name, folder or description contain this text")
	devices := fs.Bool("devices", false, "list the catalogue's devices instead of its images")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	c, err := catalog.Load(ctx, *src, catalog.Options{})
	if err != nil {
		return err
	}
	for _, w := range c.Warnings {
		env.Log.Warn(w)
	}
	if *devices {
		if common.JSON {
			return env.printJSON(c.Devices)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tTAGS\tDESCRIPTION")
		for _, d := range c.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, strings.Join(d.Tags, ","), d.Description)
		}
		return tw.Flush()
	}
	list := c.Filter(*device, *search)
	if common.JSON {
		return env.printJSON(list)
	}
	if len(list) == 0 {
		return fmt.Errorf("no image in %s matches (%d in all)", *src, len(c.OS))
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tDOWNLOAD\tRELEASED\tFIRST BOOT\tFOLDER")
	for _, o := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Name, size(o.ExtractSize), size(o.DownloadSize), dash(o.ReleaseDate),
			dash(o.InitFormat), strings.Join(o.Folder, " › "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "%d images; flash one with: kiln flash --catalog %s --os NAME --device DEV\n", len(list), *src)
	return nil
}

func size(n int64) string {
	if n <= 0 {
		return "-"
	}
	return units.Decimal(n)
}
