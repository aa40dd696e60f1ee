//go:build nogui

package main

import (
	"fmt"
	"os"

	"github.com/kilnproject/kiln/cli"
)

// runApp without the desktop app prints the command list.
func runApp(string) error {
	cli.Main([]string{"help"})
	return fmt.Errorf("this build has no desktop app; run a sub-command (%s help)", os.Args[0])
}
