package vmrunner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandLineVirt(t *testing.T) {
	s := baseSpec()
	s.Machine = Machines["virt"]
	s.Firmware, s.UEFI, s.VarsFile = FirmwareUEFI, &UEFIFirmware{Device: "flash", Code: "/usr/share/AAVMF/AAVMF_CODE.fd",
		CodeFormat: "raw", Vars: "/usr/share/AAVMF/AAVMF_VARS.fd", VarsFormat: "raw"}, "/run/k/vars.fd"
	s.Display, s.VNCSocket = DisplayVNC, "/run/k/vnc.sock"
	args, err := CommandLine(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"-machine", "virt", "-accel", "tcg,thread=multi", "-cpu", "cortex-a72"},
		{"-drive", "if=pflash,unit=0,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"},
		{"-drive", "if=pflash,unit=1,format=raw,file=/run/k/vars.fd"},
		{"-device", "virtio-gpu-pci"}, {"-device", "usb-kbd,bus=xhci.0"},
		{"-device", "virtio-blk-pci,drive=boot0,bootindex=1"}, {"-serial", "chardev:serial0"},
	} {
		if !hasSeq(args, want...) {
			t.Errorf("args lack %q:\n%s", want, strings.Join(args, " "))
		}
	}
	if hasSeq(args, "-device", "VGA") || hasSeq(args, "-cpu", "max") {
		t.Errorf("virt got a PC's devices: %s", strings.Join(args, " "))
	}
	s.Accel = AccelKVM
	if args, _ := CommandLine(s); !hasSeq(args, "-machine", "virt", "-accel", "kvm", "-cpu", "host") {
		t.Errorf("KVM: %s", strings.Join(args, " "))
	}
	for name, edit := range map[string]func(*Spec){
		"BIOS":   func(s *Spec) { s.Firmware = FirmwareBIOS },
		"CD-ROM": func(s *Spec) { s.Attach = AttachCDROM },
	} {
		bad := s
		edit(&bad)
		if _, err := CommandLine(bad); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s on virt: %v", name, err)
		}
	}
}

func TestMachines(t *testing.T) {
	if m, err := LookupMachine(""); err != nil || m.Name != "q35" {
		t.Errorf("default machine %+v %v", m, err)
	}
	if _, err := LookupMachine("sparc"); err == nil || !strings.Contains(err.Error(), "q35, raspi3b, virt") {
		t.Errorf("unknown machine: %v", err)
	}
	if m, err := MachineForArch("aarch64"); err != nil || m.Name != "virt" || m.QEMU != "qemu-system-aarch64" {
		t.Errorf("aarch64: %+v %v", m, err)
	}
	// Hardware acceleration only for the host's own arch: on this host one of the two machines
	// is foreign and gets TCG with the reason.
	for _, m := range Machines {
		c := chooseAccel(context.Background(), "/nonexistent/qemu", Config{}, m)
		if m.Arch != hostArch() && (c.Accel != AccelTCG || !strings.Contains(c.Reason, "the guest is "+m.Arch)) {
			t.Errorf("%s guest on a %s host: %+v", m.Arch, hostArch(), c)
		}
	}
}

// AAVMF comes from the aarch64 descriptors for virt; secure-boot builds with enrolled keys are
// passed over, and the x86_64 descriptors are not taken for virt (nor AAVMF for q35).
func TestFindUEFIForVirt(t *testing.T) {
	root := t.TempDir()
	fw := func(name string) string {
		p := filepath.Join(root, "fw", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("firmware"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aaCode, aaVars, aaSec, ovmfCode, ovmfVars := fw("AAVMF_CODE.fd"), fw("AAVMF_VARS.fd"), fw("AAVMF_CODE.ms.fd"), fw("OVMF_CODE.fd"), fw("OVMF_VARS.fd")
	dir := filepath.Join(root, "share")
	writeDescriptor(t, dir, "40-edk2-aarch64-secure-enrolled.json", "uefi", "aarch64", "virt-*", "flash", aaSec, aaVars, "enrolled-keys", "secure-boot")
	writeDescriptor(t, dir, "50-edk2-x86_64.json", "uefi", "x86_64", "pc-q35-*", "flash", ovmfCode, ovmfVars)
	writeDescriptor(t, dir, "60-edk2-aarch64.json", "uefi", "aarch64", "virt-*", "flash", aaCode, aaVars)
	got, err := FindUEFIFor([]string{dir}, "", Machines["virt"])
	if err != nil || got.Code != aaCode || got.Vars != aaVars {
		t.Errorf("virt: %+v, %v; want %s", got, err, aaCode)
	}
	got, err = FindUEFIFor([]string{dir}, "", Machines["q35"])
	if err != nil || got.Code != ovmfCode {
		t.Errorf("q35: %+v, %v; want %s", got, err, ovmfCode)
	}
}
