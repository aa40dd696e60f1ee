package vmrunner

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// installHint tells the user how to install what ("qemu" or "ovmf") on this host.
func installHint(what string) string {
	switch runtime.GOOS {
	case "darwin":
		return "install QEMU with Homebrew, which includes the UEFI firmware: brew install qemu"
	case "windows":
		return "install QEMU for Windows, which includes the UEFI firmware: winget install SoftwareFreedomConservancy.QEMU (or https://qemu.weilnetz.de/w64/), then add C:\\Program Files\\qemu to PATH"
	case "linux":
		cmd := linuxInstall(linuxDistro(), what)
		if what == "ovmf" {
			return "install the OVMF UEFI firmware: " + cmd + " (or boot with --firmware bios)"
		}
		return "install QEMU: " + cmd
	}
	if what == "ovmf" {
		return "install an x86_64 OVMF/edk2 firmware package, or boot with --firmware bios"
	}
	return "install QEMU (qemu-system-x86_64) from your system's packages"
}

func linuxInstall(distro, what string) string {
	type pkgs struct{ cmd, qemu, ovmf string }
	table := map[string]pkgs{
		"debian":    {"sudo apt install", "qemu-system-x86 ovmf", "ovmf"},
		"fedora":    {"sudo dnf install", "qemu-system-x86 edk2-ovmf", "edk2-ovmf"},
		"arch":      {"sudo pacman -S", "qemu-desktop edk2-ovmf", "edk2-ovmf"},
		"suse":      {"sudo zypper install", "qemu-x86 qemu-ovmf-x86_64", "qemu-ovmf-x86_64"},
		"alpine":    {"sudo apk add", "qemu-system-x86_64 ovmf", "ovmf"},
		"void":      {"sudo xbps-install", "qemu edk2-ovmf", "edk2-ovmf"},
		"gentoo":    {"sudo emerge", "app-emulation/qemu sys-firmware/edk2-ovmf", "sys-firmware/edk2-ovmf"},
		"nixos":     {"nix-shell -p", "qemu OVMF", "OVMF"},
		"mageia":    {"sudo urpmi", "qemu edk2-ovmf", "edk2-ovmf"},
		"slackware": {"sudo slackpkg install", "qemu", "ovmf"},
	}
	p, ok := table[distro]
	if !ok {
		if what == "ovmf" {
			return "your distribution's OVMF (edk2) package"
		}
		return "your distribution's qemu-system-x86_64 and OVMF packages"
	}
	if what == "ovmf" {
		return p.cmd + " " + p.ovmf
	}
	return p.cmd + " " + p.qemu
}

// linuxDistro maps /etc/os-release's ID and ID_LIKE to a family in linuxInstall's table.
func linuxDistro() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && (k == "ID" || k == "ID_LIKE") {
			ids = append(ids, strings.Fields(strings.Trim(v, `"'`))...)
		}
	}
	for _, id := range ids {
		switch id {
		case "debian", "ubuntu":
			return "debian"
		case "fedora", "rhel", "centos":
			return "fedora"
		case "arch", "manjaro":
			return "arch"
		case "suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles":
			return "suse"
		case "alpine", "void", "gentoo", "nixos", "mageia", "slackware":
			return id
		}
	}
	return ""
}

// installHintFor is installHint for a guest architecture: arm64 previews need QEMU's aarch64
// system emulator and the AAVMF firmware.
func installHintFor(what, arch string) string {
	if arch != "aarch64" {
		return installHint(what)
	}
	type pkgs struct{ cmd, qemu, fw string }
	p, ok := map[string]pkgs{
		"debian": {"sudo apt install", "qemu-system-arm qemu-efi-aarch64", "qemu-efi-aarch64"},
		"fedora": {"sudo dnf install", "qemu-system-aarch64 edk2-aarch64", "edk2-aarch64"},
		"arch":   {"sudo pacman -S", "qemu-system-aarch64 edk2-aarch64", "edk2-aarch64"},
	}[linuxDistro()]
	switch {
	case runtime.GOOS != "linux":
		return installHint(what)
	case !ok && what == "ovmf":
		return "install your distribution's AAVMF (edk2 for aarch64) package"
	case !ok:
		return "install your distribution's qemu-system-aarch64 and AAVMF (edk2 for aarch64) packages"
	case what == "ovmf":
		return "install the AAVMF UEFI firmware: " + p.cmd + " " + p.fw
	}
	return "install QEMU for arm64 guests: " + p.cmd + " " + p.qemu
}
