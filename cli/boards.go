package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/kilnproject/kiln/assembler/board"
)

func init() {
	register(&Command{Name: "boards", Summary: "list the boards a recipe can build for ([board] name)", Run: runBoards})
}

func runBoards(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "boards", "[--json] [BOARD-FILE…]")
	if err := common.parse(env, fs, args, true); err != nil {
		return err
	}
	list := board.All()
	for _, p := range fs.Args() { // check and show the user's own board files too
		b, err := board.Load(p)
		if err != nil {
			return err
		}
		list = append(list, b)
	}
	if common.JSON {
		return env.printJSON(list)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tARCH\tFIRMWARE\tKERNEL\tDESCRIPTION")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.Arch, b.Firmware, b.Kernel.Package, b.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, `pick one in the recipe: [board] name = "NAME" (or the path of a board file)`)
	return nil
}
