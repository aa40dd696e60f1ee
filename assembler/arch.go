package assembler

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnproject/kiln/assembler/recipe"
)

// efiArch is the architecture suffix of EFI file names: "x64" (BOOTX64.EFI, linuxx64.efi.stub) or
// "aa64" (BOOTAA64.EFI, linuxaa64.efi.stub).
func efiArch(r *recipe.Recipe) string {
	if r.Arch == "aarch64" {
		return "aa64"
	}
	return "x64"
}

// AgentFor returns the kiln-agent binary for a Debian architecture: the file beside agent with the
// architecture appended (bin/kiln-agent → bin/kiln-agent-arm64, as `make build` and the packages
// install them) when it exists, else agent itself (a native build, or KILN_AGENT naming one).
func AgentFor(agent, debArch string) string {
	if agent == "" {
		return agent
	}
	p := strings.TrimSuffix(agent, ".exe") + "-" + debArch
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return agent
}

// DebsDir is the directory of hand-downloaded input packages for a Debian architecture:
// Cache/debs for amd64, Cache/debs-<arch> for the others (so that packages of the same name,
// such as busybox-static, never mix).
func DebsDir(cache, debArch string) string {
	if debArch == "amd64" {
		return filepath.Join(cache, "debs")
	}
	return filepath.Join(cache, "debs-"+debArch)
}

// checkELFArch checks that an executable is a Linux ELF binary for arch (x86_64, aarch64).
func checkELFArch(data []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a Linux executable: %w", err)
	}
	want := map[string]elf.Machine{"x86_64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		return fmt.Errorf("built for %v, the image is %s", f.Machine, arch)
	}
	return nil
}
