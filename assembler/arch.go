package assembler

import (
	"bytes"
	"debug/elf"
	"fmt"
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

// AgentFor returns the kiln-agent binary for a Debian architecture given the amd64 one: agent
// itself for amd64, else the file beside it with the architecture appended
// (bin/kiln-agent → bin/kiln-agent-arm64), the names `make build` and the packages use.
func AgentFor(agent, debArch string) string {
	if debArch == "amd64" || agent == "" {
		return agent
	}
	ext := filepath.Ext(agent)
	if ext != ".exe" {
		ext = ""
	}
	return strings.TrimSuffix(agent, ext) + "-" + debArch
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
