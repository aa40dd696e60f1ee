package vmrunner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// ErrNoUEFIFirmware means no usable UEFI firmware (OVMF/edk2, AAVMF on arm64) was found on the host.
var ErrNoUEFIFirmware = errors.New("no UEFI firmware found")

// UEFIFirmware is a UEFI firmware build: a code image and its variable store template.
type UEFIFirmware struct {
	Description string
	Source      string // the descriptor file it came from, or "known path"
	Device      string // "flash" (pflash code + variables) or "memory" (a single -bios image)
	Code        string
	CodeFormat  string
	Vars        string // variable store template (flash only)
	VarsFormat  string
}

// descriptor is the subset of QEMU's firmware descriptor schema (docs/interop/firmware.json) Kiln reads.
type descriptor struct {
	Description    string   `json:"description"`
	InterfaceTypes []string `json:"interface-types"`
	Mapping        struct {
		Device     string `json:"device"`
		Executable struct {
			Filename string `json:"filename"`
			Format   string `json:"format"`
		} `json:"executable"`
		NVRAMTemplate struct {
			Filename string `json:"filename"`
			Format   string `json:"format"`
		} `json:"nvram-template"`
		Filename string `json:"filename"` // "memory" device
	} `json:"mapping"`
	Targets []struct {
		Architecture string   `json:"architecture"`
		Machines     []string `json:"machines"`
	} `json:"targets"`
	Features []string `json:"features"`
}

// descriptorDirs lists QEMU's firmware descriptor directories in QEMU's priority order: a file in
// an earlier directory hides a file of the same name in a later one. qemuBinary adds the data
// directory of a QEMU installed outside the system prefix (Homebrew, the Windows installer).
func descriptorDirs(qemuBinary string) []string {
	var dirs []string
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "qemu", "firmware"))
	} else if h, err := os.UserHomeDir(); err == nil && runtime.GOOS != "windows" {
		dirs = append(dirs, filepath.Join(h, ".config", "qemu", "firmware"))
	}
	dirs = append(dirs, "/etc/qemu/firmware", "/usr/share/qemu/firmware")
	if qemuBinary != "" {
		prefix := filepath.Dir(filepath.Dir(qemuBinary)) // <prefix>/bin/qemu-system-x86_64
		dirs = append(dirs, filepath.Join(prefix, "share", "qemu", "firmware"))
		if runtime.GOOS == "windows" { // C:\Program Files\qemu\qemu-system-x86_64.exe
			dirs = append(dirs, filepath.Join(filepath.Dir(qemuBinary), "share", "firmware"))
		}
	}
	return slices.Compact(dirs)
}

// FindUEFI returns the preferred x86_64 UEFI firmware for a q35 machine that needs neither SMM
// nor Secure Boot with enrolled keys: from the firmware descriptors in dirs (nil: QEMU's search
// path), then from a list of known install locations. The error wraps ErrNoUEFIFirmware and says
// what to install.
func FindUEFI(dirs []string, qemuBinary string) (*UEFIFirmware, error) {
	return FindUEFIFor(dirs, qemuBinary, Machines[DefaultMachine])
}

// FindUEFIFor returns the preferred UEFI firmware for machine m (AAVMF for virt) as FindUEFI does.
func FindUEFIFor(dirs []string, qemuBinary string, m Machine) (*UEFIFirmware, error) {
	if dirs == nil {
		dirs = descriptorDirs(qemuBinary)
	}
	return findUEFI(dirs, knownUEFI(qemuBinary, m.Arch), m)
}

func findUEFI(dirs []string, known []UEFIFirmware, mach Machine) (*UEFIFirmware, error) {
	if fw := fromDescriptors(dirs, mach); fw != nil {
		return fw, nil
	}
	for _, k := range known {
		if fileExists(k.Code) && (k.Device == "memory" || fileExists(k.Vars)) {
			return &k, nil
		}
	}
	if mach.Arch != "x86_64" {
		return nil, fmt.Errorf("%w for %s: %s", ErrNoUEFIFirmware, mach.Arch, installHintFor("ovmf", mach.Arch))
	}
	return nil, fmt.Errorf("%w: %s", ErrNoUEFIFirmware, installHint("ovmf"))
}

func fromDescriptors(dirs []string, m Machine) *UEFIFirmware {
	byName := map[string]string{} // file name -> path; the first directory wins
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".json") {
				if _, seen := byName[e.Name()]; !seen {
					byName[e.Name()] = filepath.Join(d, e.Name())
				}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names) // descriptors are ordered by file name ("50-…" before "60-…")
	for _, n := range names {
		data, err := os.ReadFile(byName[n])
		if err != nil {
			continue
		}
		var d descriptor
		if json.Unmarshal(data, &d) != nil || !usable(&d, m) {
			continue
		}
		fw := &UEFIFirmware{Description: d.Description, Source: byName[n], Device: d.Mapping.Device}
		switch d.Mapping.Device {
		case "flash":
			fw.Code, fw.CodeFormat = d.Mapping.Executable.Filename, d.Mapping.Executable.Format
			fw.Vars, fw.VarsFormat = d.Mapping.NVRAMTemplate.Filename, d.Mapping.NVRAMTemplate.Format
			if fw.Vars == "" || !fileExists(fw.Vars) {
				continue
			}
		case "memory":
			fw.Code, fw.CodeFormat = d.Mapping.Filename, "raw"
		default:
			continue
		}
		if fw.CodeFormat == "" {
			fw.CodeFormat = "raw"
		}
		if fw.VarsFormat == "" {
			fw.VarsFormat = "raw"
		}
		if fileExists(fw.Code) {
			return fw
		}
	}
	return nil
}

// usable accepts UEFI firmware for machine m (x86_64 q35, aarch64 virt) without an SMM
// requirement, without enrolled keys and without Secure Boot (which would refuse unsigned images).
func usable(d *descriptor, m Machine) bool {
	if !slices.Contains(d.InterfaceTypes, "uefi") {
		return false
	}
	for _, f := range d.Features {
		switch f {
		case "requires-smm", "enrolled-keys", "secure-boot":
			return false
		}
	}
	for _, t := range d.Targets {
		if t.Architecture != m.Arch {
			continue
		}
		for _, pat := range t.Machines {
			if ok, _ := path.Match(pat, m.Firmware); ok {
				return true
			}
		}
	}
	return false
}

// knownUEFI lists where distributions and installers put OVMF (x86_64) or AAVMF (aarch64) when no
// descriptor names it.
func knownUEFI(qemuBinary, arch string) []UEFIFirmware {
	flash := func(code, vars string) UEFIFirmware {
		return UEFIFirmware{Description: "OVMF", Source: "known path", Device: "flash",
			Code: code, CodeFormat: "raw", Vars: vars, VarsFormat: "raw"}
	}
	if arch == "aarch64" {
		list := []UEFIFirmware{
			flash("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),                                // Debian, Ubuntu
			flash("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"), // Fedora
		}
		share := "/opt/homebrew/share/qemu"
		if qemuBinary != "" {
			share = filepath.Join(filepath.Dir(filepath.Dir(qemuBinary)), "share", "qemu")
		}
		list = append(list, flash(filepath.Join(share, "edk2-aarch64-code.fd"), filepath.Join(share, "edk2-arm-vars.fd")))
		for i := range list {
			list[i].Description = "AAVMF"
		}
		return list
	}
	var list []UEFIFirmware
	switch runtime.GOOS {
	case "linux":
		list = []UEFIFirmware{
			flash("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),                 // Debian, Ubuntu
			flash("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),                       // older Debian, Ubuntu
			flash("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),             // Fedora
			flash("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),         // Arch
			flash("/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"),     // older Arch
			flash("/usr/share/qemu/ovmf-x86_64-code.bin", "/usr/share/qemu/ovmf-x86_64-vars.bin"),       // openSUSE
			flash("/usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2", "/usr/share/edk2/ovmf/OVMF_VARS_4M.qcow2"), // Fedora 40+
		}
		list[len(list)-1].CodeFormat, list[len(list)-1].VarsFormat = "qcow2", "qcow2"
	case "darwin":
		for _, p := range []string{"/opt/homebrew/share/qemu", "/usr/local/share/qemu", "/opt/local/share/qemu"} {
			list = append(list, flash(p+"/edk2-x86_64-code.fd", p+"/edk2-i386-vars.fd"))
		}
	case "windows":
		for _, p := range []string{`C:\Program Files\qemu\share`, `C:\msys64\mingw64\share\qemu`} {
			list = append(list, flash(p+`\edk2-x86_64-code.fd`, p+`\edk2-i386-vars.fd`))
		}
	}
	if qemuBinary != "" { // QEMU's own edk2 build next to the binary's data directory
		share := filepath.Join(filepath.Dir(filepath.Dir(qemuBinary)), "share", "qemu")
		if runtime.GOOS == "windows" {
			share = filepath.Join(filepath.Dir(qemuBinary), "share")
		}
		list = append(list, flash(filepath.Join(share, "edk2-x86_64-code.fd"), filepath.Join(share, "edk2-i386-vars.fd")))
	}
	return list
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
