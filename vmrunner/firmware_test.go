package vmrunner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

func writeDescriptor(t *testing.T, dir, name, iface, arch, machines, device, code, vars string, features ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mapping := fmt.Sprintf(`"device": "flash", "executable": {"filename": %q, "format": "raw"}, "nvram-template": {"filename": %q, "format": "raw"}`, code, vars)
	if device == "memory" {
		mapping = fmt.Sprintf(`"device": "memory", "filename": %q`, code)
	}
	feats := `[]`
	if len(features) > 0 {
		feats = `["` + strings.Join(features, `", "`) + `"]`
	}
	doc := fmt.Sprintf(`{"description": %q, "interface-types": [%q], "mapping": {%s},
		"targets": [{"architecture": %q, "machines": [%q]}], "features": %s, "tags": []}`,
		name, iface, mapping, arch, machines, feats)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindUEFIFromDescriptors(t *testing.T) {
	root := t.TempDir()
	fw := func(name string) string {
		p := filepath.Join(root, "fw", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("firmware"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, vars, secCode, userCode, mem := fw("CODE.fd"), fw("VARS.fd"), fw("CODE.secboot.fd"), fw("USER_CODE.fd"), fw("OVMF.fd")
	user, etc, system := filepath.Join(root, "user"), filepath.Join(root, "etc"), filepath.Join(root, "share")

	tests := []struct {
		name  string
		setup func(t *testing.T)
		want  string // Code of the chosen firmware; "" = none
	}{
		{"plain edk2 after a secure-boot build that requires SMM", func(t *testing.T) {
			writeDescriptor(t, system, "40-secure-enrolled.json", "uefi", "x86_64", "pc-q35-*", "flash", secCode, vars, "requires-smm", "enrolled-keys", "secure-boot")
			writeDescriptor(t, system, "50-secure.json", "uefi", "x86_64", "pc-q35-*", "flash", secCode, vars, "requires-smm", "secure-boot")
			writeDescriptor(t, system, "60-plain.json", "uefi", "x86_64", "pc-q35-*", "flash", code, vars, "acpi-s3")
		}, code},
		{"a user descriptor hides the system one of the same name", func(t *testing.T) {
			writeDescriptor(t, system, "60-plain.json", "uefi", "x86_64", "pc-q35-*", "flash", code, vars)
			writeDescriptor(t, user, "60-plain.json", "uefi", "x86_64", "pc-q35-*", "flash", userCode, vars)
		}, userCode},
		{"lower file names win across directories", func(t *testing.T) {
			writeDescriptor(t, system, "30-first.json", "uefi", "x86_64", "pc-q35-*", "flash", code, vars)
			writeDescriptor(t, etc, "70-later.json", "uefi", "x86_64", "pc-q35-*", "flash", userCode, vars)
		}, code},
		{"missing executable skipped", func(t *testing.T) {
			writeDescriptor(t, system, "10-gone.json", "uefi", "x86_64", "pc-q35-*", "flash", filepath.Join(root, "gone.fd"), vars)
			writeDescriptor(t, system, "20-here.json", "uefi", "x86_64", "pc-q35-*", "flash", code, vars)
		}, code},
		{"single-file firmware in memory", func(t *testing.T) {
			writeDescriptor(t, system, "60-mem.json", "uefi", "x86_64", "pc-q35-*", "memory", mem, "")
		}, mem},
		{"other architectures, machines and BIOS skipped", func(t *testing.T) {
			writeDescriptor(t, system, "10-arm.json", "uefi", "aarch64", "virt-*", "flash", code, vars)
			writeDescriptor(t, system, "20-i440fx.json", "uefi", "x86_64", "pc-i440fx-*", "flash", code, vars)
			writeDescriptor(t, system, "30-bios.json", "bios", "x86_64", "pc-q35-*", "memory", mem, "")
		}, ""},
		{"broken JSON skipped", func(t *testing.T) {
			os.MkdirAll(system, 0o755)
			os.WriteFile(filepath.Join(system, "10-broken.json"), []byte("{"), 0o644)
			writeDescriptor(t, system, "20-ok.json", "uefi", "x86_64", "pc-q35-*", "flash", code, vars)
		}, code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, d := range []string{user, etc, system} {
				os.RemoveAll(d)
			}
			tt.setup(t)
			got, err := findUEFI([]string{user, etc, system}, nil, Machines["q35"])
			if tt.want == "" {
				if !errors.Is(err, ErrNoUEFIFirmware) {
					t.Fatalf("got %+v, %v; want ErrNoUEFIFirmware", got, err)
				}
				if !strings.Contains(err.Error(), "install") {
					t.Errorf("error %q does not say what to install", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Code != tt.want {
				t.Errorf("chose %s (from %s), want %s", got.Code, got.Source, tt.want)
			}
		})
	}
}

func TestFindUEFIFallsBackToKnownPaths(t *testing.T) {
	dir := t.TempDir()
	code, vars := filepath.Join(dir, "OVMF_CODE.fd"), filepath.Join(dir, "OVMF_VARS.fd")
	os.WriteFile(code, []byte("c"), 0o644)
	os.WriteFile(vars, []byte("v"), 0o644)
	known := []UEFIFirmware{
		{Device: "flash", Code: filepath.Join(dir, "missing.fd"), Vars: vars},
		{Device: "flash", Code: code, Vars: vars, CodeFormat: "raw", VarsFormat: "raw", Source: "known path"},
	}
	got, err := findUEFI([]string{filepath.Join(dir, "no-descriptors")}, known, Machines["q35"])
	if err != nil || got.Code != code {
		t.Fatalf("findUEFI = %+v, %v; want %s", got, err, code)
	}
}

// On a host with OVMF installed the real search finds an x86_64 build without SMM or enrolled keys.
func TestFindUEFIOnThisHost(t *testing.T) {
	fw, err := FindUEFI(nil, "")
	if errors.Is(err, ErrNoUEFIFirmware) {
		testenv.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("UEFI firmware: %s (%s) from %s", fw.Code, fw.Description, fw.Source)
	for _, bad := range []string{"secboot", "snakeoil", ".ms."} {
		if strings.Contains(fw.Code, bad) {
			t.Errorf("chose %s, a Secure Boot build", fw.Code)
		}
	}
}
