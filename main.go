// Command kiln builds, flashes, previews and serves OS images. Without arguments it opens the desktop
// app; with arguments it runs a sub-command (see `kiln help`).
package main

import (
	"fmt"
	"os"

	"github.com/kilnproject/kiln/app"
	"github.com/kilnproject/kiln/cli"
	"github.com/kilnproject/kiln/internal/version"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(cli.Main(os.Args[1:]))
	}
	if err := app.Run(version.Version); err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		os.Exit(1)
	}
}
