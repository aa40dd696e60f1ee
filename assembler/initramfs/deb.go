package initramfs

import (
	"fmt"

	"github.com/kilnproject/kiln/assembler/deb"
)

// BusyboxFromDeb reads the static busybox binary (bin/busybox) of a busybox-static package.
func BusyboxFromDeb(p *deb.Package) (File, error) {
	b, err := p.ReadFile("bin/busybox")
	if err != nil {
		return File{}, fmt.Errorf("busybox from %s: %w (is it busybox-static?)", p.Path, err)
	}
	return File{Path: "bin/busybox", Mode: 0o755, Data: b, Origin: p.Name + " " + p.Version}, nil
}
