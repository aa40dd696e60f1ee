// Command kiln builds, flashes, previews and serves OS images. Without arguments it opens the desktop
// app; with arguments it runs a sub-command (see `kiln help`). Built with -tags nogui (the macOS CLI
// release, the Windows test build) it has no desktop app and needs no cgo.
package main

import (
	"fmt"
	"os"

	"github.com/kilnproject/kiln/assembler/dpkgconf"
	"github.com/kilnproject/kiln/cli"
	"github.com/kilnproject/kiln/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == dpkgconf.ChildCommand { // package configuration as an ordinary user
		os.Exit(dpkgconf.ChildMain(os.Args[2:]))
	}
	if len(os.Args) > 1 {
		os.Exit(cli.Main(os.Args[1:]))
	}
	if err := runApp(version.Version); err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		os.Exit(1)
	}
}
