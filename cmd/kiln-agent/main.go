// Command kiln-agent runs on devices booted from a Kiln image: it finds the owner's update server,
// installs signed updates into the inactive boot slot and confirms or rolls back the boot.
package main

import (
	"fmt"
	"os"

	"github.com/kilnproject/kiln/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Printf("kiln-agent %s\n", version.Version)
		return
	}
	fmt.Fprintf(os.Stderr, "kiln-agent %s\n", version.Version)
}
