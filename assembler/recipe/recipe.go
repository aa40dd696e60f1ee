// Package recipe reads, validates and writes Kiln recipes (kiln.toml, format version 1).
//
// A recipe describes one image: its name and version, the board (disk layout, firmware), the kernel
// and its modules, first-boot system settings, the data partition and the update policy. Every
// section and field is optional: what a recipe omits takes the value of the built-in default recipe
// "Kiln Tiny" (assets/kiln.toml), so five lines make a complete recipe:
//
//	kiln = 1
//	name = "garden"
//	version = "1.0.0"
//	[system]
//	hostname = "garden"
//
// Load and Parse report every problem they find at once, each with the file, line and field and a
// hint (see Error); a recipe whose format version this Kiln does not support fails fast with an
// error wrapping ErrIncompatible.
package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kilnproject/kiln/assembler/board"
	"github.com/kilnproject/kiln/assets"
)

// The recipe format versions this Kiln reads.
const (
	MinFormat = 1
	MaxFormat = 1
)

// Sentinel errors a front end branches on.
var (
	// ErrIncompatible: the recipe's format version (kiln = N) is outside [MinFormat, MaxFormat].
	ErrIncompatible = errors.New("incompatible recipe format")
	// ErrInvalid: the recipe has syntax or validation errors (the error is an *Error listing them).
	ErrInvalid = errors.New("invalid recipe")
)

// Recipe is a parsed recipe. Path and Dir are not part of the file: Path is the file it was read
// from ("" for the built-in default) and Dir the directory that relative paths in it (files,
// SSH key files, overlays, .deb paths) are resolved against; use Resolve.
type Recipe struct {
	Kiln        int    `toml:"kiln"`
	Name        string `toml:"name"`
	Version     string `toml:"version"`
	Arch        string `toml:"arch"`
	Description string `toml:"description"`

	Board   Board   `toml:"board"`
	Kernel  Kernel  `toml:"kernel"`
	System  System  `toml:"system"`
	Data    Data    `toml:"data"`
	Update  Update  `toml:"update"`
	Outputs Outputs `toml:"outputs"`
	// Archive names where packages come from; nil: the host's apt sources.
	Archive *Archive `toml:"archive,omitempty"`

	Path string `toml:"-"`
	Dir  string `toml:"-"`

	lines map[string]int // field path → line in Path, for validation messages
}

// Board selects the board support data (a built-in board or a board file, see package board) and
// overrides its firmware and disk layout. Fields the recipe leaves out take the board's values.
type Board struct {
	Name     string `toml:"name,omitempty"` // built-in board ("pc", "arm64-uefi", "rpi") or board file path; "": by arch
	Firmware string `toml:"firmware"`       // FirmwareUEFI, FirmwareBIOS, FirmwareHybrid or FirmwareRPi
	DiskSize Size   `toml:"disk_size"`      // whole image
	ESPSize  Size   `toml:"esp_size"`       // EFI system partition (FAT32)
	DataSize Size   `toml:"data_size"`      // data partition; 0 = the rest of the disk
	// RootSize is each of the two root partitions of a package image; 0: twice the root
	// filesystem, rounded up to 64 MiB, at least 256 MiB.
	RootSize   Size   `toml:"root_size,omitempty"`
	Bootloader string `toml:"bootloader"` // systemd-boot package name or .deb path
	BootTries  int    `toml:"boot_tries"` // boot counting: tries a new version gets
	GRUB       string `toml:"grub"`       // grub-pc-bin package name or .deb path (BIOS boot)
}

// Firmware values.
const (
	FirmwareUEFI   = "uefi"   // systemd-boot on the ESP
	FirmwareBIOS   = "bios"   // GRUB from the MBR and a BIOS boot partition
	FirmwareHybrid = "hybrid" // both: the disk boots on UEFI and on legacy BIOS
	FirmwareRPi    = "rpi"    // the Raspberry Pi's own firmware from the FAT boot partition
)

// BIOS reports whether the image boots on legacy BIOS (through GRUB).
func (b Board) BIOS() bool { return b.Firmware == FirmwareBIOS || b.Firmware == FirmwareHybrid }

// UEFI reports whether the image boots on UEFI (through systemd-boot).
func (b Board) UEFI() bool { return b.Firmware == FirmwareUEFI || b.Firmware == FirmwareHybrid }

// Outputs selects the files a build writes besides the disk image.
type Outputs struct {
	ISO bool `toml:"iso"` // <name>.iso: a hybrid ISO 9660 image (CD/DVD and USB stick, BIOS and UEFI)
}

// Kernel selects the kernel and the modules placed into the initramfs.
type Kernel struct {
	Package string   `toml:"package"` // linux-image package name or .deb path
	Cmdline string   `toml:"cmdline"`
	Modules []string `toml:"modules"` // loaded at boot, with their dependencies
}

// System holds the first-boot settings of the booted system.
type System struct {
	Hostname     string   `toml:"hostname"`
	Busybox      string   `toml:"busybox"` // busybox package name or .deb path
	Timezone     string   `toml:"timezone"`
	Console      string   `toml:"console,omitempty"` // "auto", "shell" or "login": see ConsoleShell
	Users        []User   `toml:"users,omitempty"`
	WiFi         *WiFi    `toml:"wifi,omitempty"`
	Files        []File   `toml:"files,omitempty"`
	Overlays     []string `toml:"overlays,omitempty"`      // directories or tarballs merged into the root
	AllowDevices bool     `toml:"allow_devices,omitempty"` // let overlays carry device nodes
	// Packages are Debian packages installed with their dependencies: "dropbear",
	// "python3 (>= 3.11)", "mawk | gawk".
	Packages []string  `toml:"packages,omitempty"`
	Services []Service `toml:"services,omitempty"`
}

// Service is a program the image starts at boot and keeps running.
type Service struct {
	Name         string `toml:"name"`
	Command      string `toml:"command"`                 // run by /bin/sh -c
	User         string `toml:"user,omitempty"`          // "": root
	Restart      string `toml:"restart,omitempty"`       // "always" (default), "on-failure" or "no"
	AfterNetwork bool   `toml:"after_network,omitempty"` // start once the network is configured
}

// Archive is the Debian archive packages and the build's own inputs come from. With no mirrors the
// host's apt sources are used (Suites, if given, select among them).
type Archive struct {
	Mirrors    []string `toml:"mirrors,omitempty"`    // base URLs, e.g. "https://<mirror>/debian"
	Suites     []string `toml:"suites,omitempty"`     // e.g. ["bookworm", "bookworm-updates"]
	Components []string `toml:"components,omitempty"` // default ["main"]
	Keyring    string   `toml:"keyring,omitempty"`    // OpenPGP keyring file; default: the host's Debian archive keyring
	Arch       string   `toml:"arch,omitempty"`       // Debian architecture; default: from the recipe's arch
}

// DebianArch is the Debian architecture packages are taken for: archive.arch, else the one
// matching the recipe's arch.
func (r *Recipe) DebianArch() string {
	if r.Archive != nil && r.Archive.Arch != "" {
		return r.Archive.Arch
	}
	return board.DebianArch(r.Arch)
}

// ConsoleShell tells whether the serial console and the first virtual terminal open a root shell
// rather than a login prompt. "shell" and "login" say so; "auto" (or empty) gives a shell only while
// the recipe sets no password at all, since nobody could log in otherwise.
func (s *System) ConsoleShell() bool {
	switch s.Console {
	case "shell":
		return true
	case "login":
		return false
	}
	for _, u := range s.Users {
		if u.PasswordHash != "" {
			return false
		}
	}
	return true
}

// User is a login account.
type User struct {
	Name         string   `toml:"name"`
	PasswordHash string   `toml:"password_hash,omitempty"` // crypt(3) string; empty: no password login
	SSHKeys      []string `toml:"ssh_keys,omitempty"`      // authorized_keys lines
	SSHKeyFiles  []string `toml:"ssh_key_files,omitempty"` // files of authorized_keys lines
	UID          *int     `toml:"uid,omitempty"`           // nil: assigned from 1000 (root: 0)
}

// WiFi holds the credentials of one wireless network. The PSK is a secret: never log it.
type WiFi struct {
	SSID    string `toml:"ssid"`
	PSK     string `toml:"psk"`
	Country string `toml:"country,omitempty"` // ISO 3166 alpha-2 regulatory domain
}

// String hides the PSK so that a WiFi never leaks it into logs.
func (w WiFi) String() string {
	return fmt.Sprintf("{SSID:%q PSK:<redacted> Country:%q}", w.SSID, w.Country)
}

// File is an extra file placed into the image: exactly one of Source (a file, relative to the
// recipe's directory) and Content.
type File struct {
	Path    string `toml:"path"` // absolute path in the image
	Source  string `toml:"source,omitempty"`
	Content string `toml:"content,omitempty"`
	Mode    Mode   `toml:"mode,omitempty"` // 0: 0644
}

// Data is the persistent data partition.
type Data struct {
	Label    string   `toml:"label"`              // FAT volume label
	Overlays []string `toml:"overlays,omitempty"` // directories or tarballs copied onto it
}

// Update is the OTA policy of this version.
type Update struct {
	Channel     string `toml:"channel"`
	MinFrom     string `toml:"min_from"`     // oldest version that may update to this one
	MaxFrom     string `toml:"max_from"`     // newest; "" = any version below this one
	Server      string `toml:"server"`       // update server URL; "" = discover on the LAN
	HealthCheck string `toml:"health_check"` // command the agent runs to confirm a new version; "" = reaching the ready line
}

// Default returns a fresh copy of the built-in default recipe "Kiln Tiny".
func Default() *Recipe {
	r, err := decode("kiln.toml (built-in)", assets.DefaultRecipe, nil)
	if err != nil {
		panic("recipe: built-in default recipe: " + err.Error())
	}
	r.Path, r.Dir, r.lines = "", "", nil
	return r
}

// Load reads and validates the recipe file at path.
func Load(path string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load recipe %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates recipe data read from filename (used in messages and as the base of
// relative paths). Fields the data omits take the default recipe's values.
func Parse(filename string, data []byte) (*Recipe, error) {
	r, err := decode(filename, data, Default())
	var probs []Problem
	var de *Error
	switch {
	case errors.As(err, &de) && r != nil:
		probs = de.Problems // type errors: keep checking the rest
	case err != nil:
		return nil, err
	}
	probs = append(probs, r.applyBoard()...)
	if err := r.Validate(); err != nil {
		probs = append(probs, err.(*Error).Problems...)
	}
	if len(probs) > 0 {
		return nil, newError(filename, probs)
	}
	return r, nil
}

// Marshal encodes the recipe as TOML that Parse reads back to an equal recipe.
func (r *Recipe) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode recipe %s: %w", r.Name, err)
	}
	return buf.Bytes(), nil
}

// Resolve returns p resolved against the recipe's directory when it is relative; a leading "~/"
// stands for the user's home directory.
func (r *Recipe) Resolve(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	if p == "" || filepath.IsAbs(p) || r.Dir == "" {
		return p
	}
	return filepath.Join(r.Dir, p)
}

// IsPackagePath reports whether a package reference (kernel.package, system.busybox,
// board.bootloader) names a .deb file rather than a package in the input cache.
func IsPackagePath(ref string) bool {
	return strings.HasSuffix(ref, ".deb") || strings.ContainsRune(ref, '/') || strings.ContainsRune(ref, filepath.Separator)
}
