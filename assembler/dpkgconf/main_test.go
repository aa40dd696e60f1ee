package dpkgconf_test

import (
	"os"
	"testing"

	"github.com/kilnproject/kiln/assembler/dpkgconf"
)

// TestMain lets the test binary be the namespace child, as the kiln command is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == dpkgconf.ChildCommand {
		os.Exit(dpkgconf.ChildMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}
