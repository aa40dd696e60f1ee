package dpkgconf

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// elfHeader returns the 64-byte header of a little-endian ELF64 executable for machine m: all
// that checkRunnable reads.
func elfHeader(m elf.Machine) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(m))
	binary.LittleEndian.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return h
}

// TestCheckRunnable: a foreign image's scripts need a QEMU user emulator registered and enabled
// in binfmt_misc; without one the build stops before any script with the packages to install,
// instead of dpkg's "exec format error".
func TestCheckRunnable(t *testing.T) {
	native := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	foreign, qemu := elf.EM_AARCH64, "qemu-aarch64"
	if native == elf.EM_AARCH64 {
		foreign, qemu = elf.EM_X86_64, "qemu-x86_64"
	}
	for _, tc := range []struct {
		name    string
		machine elf.Machine
		binfmt  string // contents of the emulator's registration; "" for none
		ok      bool
	}{
		{"native", native, "", true},
		{"foreign, emulator enabled", foreign, "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n", true},
		{"foreign, emulator disabled", foreign, "disabled\n", false},
		{"foreign, no emulator", foreign, "", false},
		{"unknown machine", elf.EM_MIPS, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, binfmt := t.TempDir(), t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "usr/bin/dpkg"), elfHeader(tc.machine), 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.binfmt != "" {
				if err := os.WriteFile(filepath.Join(binfmt, qemu), []byte(tc.binfmt), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := checkRunnable(root, binfmt)
			if (err == nil) != tc.ok {
				t.Fatalf("checkRunnable: %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v is not ErrUnsupported", err)
			}
			if err != nil && tc.machine == foreign && !strings.Contains(err.Error(), "qemu-user-static binfmt-support") {
				t.Errorf("error %q does not say what to install", err)
			}
		})
	}
}
