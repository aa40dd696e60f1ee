package dpkgconf

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// qemuArch names the QEMU user emulator of an ELF machine, as binfmt-support and systemd-binfmt
// name its registration in binfmt_misc (qemu-aarch64); the Go architecture is the host's.
var qemuArch = map[elf.Machine]struct{ qemu, goarch string }{
	elf.EM_X86_64:  {"x86_64", "amd64"},
	elf.EM_AARCH64: {"aarch64", "arm64"},
	elf.EM_ARM:     {"arm", "arm"},
	elf.EM_386:     {"i386", "386"},
}

// checkRunnable reports, before any script runs, whether this host can run the programs of the
// image in root: natively, or through a QEMU user emulator registered with binfmt_misc (under
// binfmtDir, /proc/sys/fs/binfmt_misc). dpkg, an Essential package, stands for the image.
func checkRunnable(root, binfmtDir string) error {
	f, err := elf.Open(filepath.Join(root, "usr/bin/dpkg"))
	if err != nil {
		return nil // no dpkg, or not ELF: the scripts' own run reports it
	}
	m := f.Machine
	f.Close()
	a, ok := qemuArch[m]
	if ok && a.goarch == runtime.GOARCH {
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: the image's programs are built for %v, which kiln cannot run on this %s host", ErrUnsupported, m, runtime.GOARCH)
	}
	if binfmtEnabled(filepath.Join(binfmtDir, "qemu-"+a.qemu)) {
		return nil
	}
	return fmt.Errorf("%w: the image is %s and this %s host cannot run its maintainer scripts: "+
		"install qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support), "+
		"then check that `update-binfmts --display qemu-%s` says enabled", ErrUnsupported, a.goarch, runtime.GOARCH, a.qemu)
}

// binfmtEnabled reports whether the binfmt_misc registration in file is there and enabled.
func binfmtEnabled(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	return s.Scan() && strings.TrimSpace(s.Text()) == "enabled"
}
