package board

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/units"
)

func TestBuiltins(t *testing.T) {
	if got := strings.Join(Names(), " "); got != "arm64-uefi pc rpi" {
		t.Fatalf("Names() = %q", got)
	}
	pc, err := Builtin("pc")
	if err != nil {
		t.Fatal(err)
	}
	if pc.Arch != "x86_64" || pc.Firmware != "uefi" || pc.Kernel.Package != "linux-image-amd64" ||
		pc.Layout.DiskSize != 512*units.MiB || pc.Layout.ESPSize != 192*units.MiB || pc.Boot.BootTries != 3 ||
		pc.DebianArch() != "amd64" || pc.Preview.Machine != "q35" {
		t.Errorf("pc = %+v", pc)
	}
	arm, err := Builtin("arm64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	if arm.Arch != "aarch64" || arm.DebianArch() != "arm64" || arm.Kernel.Package != "linux-image-arm64" ||
		arm.Kernel.Console != "ttyAMA0" || arm.Preview.Machine != "virt" {
		t.Errorf("arm64-uefi = %+v", arm)
	}
	rpi, err := Builtin("rpi")
	if err != nil {
		t.Fatal(err)
	}
	want := "bcm2710-rpi-3-b bcm2710-rpi-zero-2-w bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4"
	if rpi.Firmware != "rpi" || rpi.Arch != "aarch64" || strings.Join(rpi.Kernel.DeviceTrees, " ") != want ||
		rpi.Boot.FirmwarePackage != "raspi-firmware" || rpi.Boot.FirmwareComponent != "non-free-firmware" ||
		rpi.Kernel.Package != "linux-image-arm64" {
		t.Errorf("rpi = %+v", rpi)
	}
	if n := len(All()); n != 3 {
		t.Errorf("All() has %d boards", n)
	}
	if _, err := Builtin("pi5"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "arm64-uefi, pc, rpi") {
		t.Errorf("Builtin(pi5) = %v, want ErrUnknown listing the boards", err)
	}
	if _, err := Builtin("../pc"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Builtin(../pc) = %v", err)
	}
}

const good = `name = "mine"
arch = "aarch64"
firmware = "uefi"
[kernel]
package = "linux-image-arm64"
console = "ttyAMA0"
[boot]
bootloader = "systemd-boot-efi"
boot_tries = 3
[layout]
disk_size = "1GiB"
esp_size = "256MiB"
`

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		field     string
		msg       string
	}{
		{"ok", good, 0, "", ""},
		{"kernel arch mismatch", strings.Replace(good, "linux-image-arm64", "linux-image-amd64", 1), 5, "kernel.package", "built for amd64, the board's arch is aarch64"},
		{"unknown arch", strings.Replace(good, `"aarch64"`, `"riscv64"`, 1), 2, "arch", `unsupported arch "riscv64"`},
		{"bios on arm", strings.Replace(good, `firmware = "uefi"`, `firmware = "bios"`, 1), 3, "firmware", "needs arch x86_64"},
		{"unknown firmware", strings.Replace(good, `firmware = "uefi"`, `firmware = "coreboot"`, 1), 3, "firmware", `unknown firmware "coreboot"`},
		{"unknown field", good + "wheels = 4\n", 13, "layout.wheels", `unknown field "layout.wheels"`},
		{"bad size", strings.Replace(good, `"1GiB"`, `"1.5 parsecs"`, 1), 11, "", "bad size"},
		{"odd size", strings.Replace(good, `"1GiB"`, `"1000000"`, 1), 11, "layout.disk_size", "bad size"},
		{"type", strings.Replace(good, "boot_tries = 3", `boot_tries = "3"`, 1), 0, "", "line 9 (last key \"boot.boot_tries\"): incompatible types"},
		{"syntax", "name = \n", 1, "", ""},
		{"rpi without dtbs", strings.Replace(good, `firmware = "uefi"`, `firmware = "rpi"`, 1), 0, "kernel.device_trees", "needs device trees"},
		{"machine", good + "[preview]\nmachine = \"q35\"\n", 14, "preview.machine", `machine "q35"`},
		{"console", strings.Replace(good, `"ttyAMA0"`, `"/dev/ttyAMA0"`, 1), 6, "kernel.console", "bad console"},
		{"wifi package", good + "[wifi]\npackages = [\"Firmware X\"]\n", 14, "wifi.packages[0]", "bad package name"},
		{"wifi module", good + "[wifi]\nmodules = [\"brcm fmac\"]\n", 14, "wifi.modules[0]", "bad module name"},
		{"wifi component", good + "[wifi]\ncomponent = \"non free\"\n", 14, "wifi.component", "bad component"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Parse("my.toml", []byte(tc.src))
			if tc.msg == "" && tc.line == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if b.Name != "mine" || b.Layout.DiskSize != units.GiB {
					t.Errorf("parsed %+v", b)
				}
				return
			}
			var be *Error
			if !errors.As(err, &be) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want *Error", err)
			}
			var found bool
			for _, p := range be.Problems {
				if strings.Contains(p.Msg, tc.msg) && (tc.field == "" || p.Field == tc.field) && (tc.line == 0 || p.Line == tc.line) {
					found = true
				}
			}
			if !found {
				t.Errorf("err = %v, want line %d field %q message %q", err, tc.line, tc.field, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "my.toml") {
				t.Errorf("err %q does not name the file", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mine.toml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(p)
	if err != nil || b.File != p || b.Arch != "aarch64" {
		t.Fatalf("Load = %+v, %v", b, err)
	}
	if !IsPath(p) || !IsPath("x.toml") || IsPath("rpi") {
		t.Error("IsPath")
	}
	if _, err := Load(filepath.Join(dir, "none.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(good+"# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized file: %v", err)
	}
	for _, p := range []string{dir, "/dev/zero"} {
		if _, err := Load(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Load(%s) = %v, want ErrInvalid", p, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range Names() {
		data, _ := builtin.ReadFile("boards/" + n + ".toml")
		f.Add(data)
	}
	f.Add([]byte(good))
	f.Add([]byte("name = \"x\"\n[kernel]\nmodules = [\"a\", 1]\n"))
	f.Add([]byte("[[layout]]\ndisk_size = -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse("fuzz.toml", data)
		if err == nil && (b.Arch != ArchX86_64 && b.Arch != ArchAArch64) {
			t.Fatalf("accepted arch %q", b.Arch)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
	})
}
