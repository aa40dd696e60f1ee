// Package customise writes first-boot settings — hostname, users with password hashes and SSH keys,
// Wi-Fi, timezone and keyboard — into the boot FAT partition of a third-party image as cloud-init
// NoCloud files (user-data, network-config, meta-data), or for Raspberry Pi OS before Trixie as
// Raspberry Pi Imager's firstrun.sh run once from cmdline.txt, while the flasher writes the image. It finds
// the partition in the image's MBR or GPT, checks its FAT12, FAT16 or FAT32 file system before changing
// it, decides whether the image uses cloud-init (declared by a catalogue's init_format or seen on
// the partition) and leaves images of any other format unchanged, saying why. Nothing but the boot
// partition changes.
package customise

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kilnproject/kiln/assembler/recipe"
)

// Formats of first-boot settings, as Raspberry Pi Imager's catalogue names them (init_format).
const (
	FormatAuto         = ""              // look at the boot partition
	FormatCloudInit    = "cloudinit"     // cloud-init NoCloud files on the boot partition (Ubuntu)
	FormatCloudInitRPi = "cloudinit-rpi" // the same on Raspberry Pi OS (Trixie and later)
	FormatSystemd      = "systemd"       // Imager's firstrun.sh run once from cmdline.txt (Raspberry Pi OS before Trixie)
	FormatNone         = "none"          // the image takes no settings
)

// MaxUserData bounds a user's own user-data file.
const MaxUserData = 1 << 20

// Settings are the first-boot settings for a third-party image. Hostname, Timezone, Users and WiFi
// are a recipe's [system] settings and follow its rules (recipe.CheckFirstBoot).
type Settings struct {
	Hostname   string
	Timezone   string        // IANA zone, e.g. "Europe/Berlin"
	Users      []recipe.User // Name, PasswordHash, SSHKeys
	WiFi       *recipe.WiFi  // SSID, PSK (a secret), Country
	WiFiHidden bool          // the network does not broadcast its SSID
	Keyboard   string        // XKB layout, e.g. "us" or "de"
	// UserData is the user's own user-data file: written as given when no other setting is set,
	// merged with the settings otherwise (it must then be #cloud-config; see Merge).
	UserData []byte
	// Format is the image's declared format (a catalogue's init_format); FormatAuto looks.
	Format string
}

// FromRecipe takes the first-boot settings of a recipe's [system] table.
func FromRecipe(s recipe.System) Settings {
	return Settings{Hostname: s.Hostname, Timezone: s.Timezone, Users: s.Users, WiFi: s.WiFi}
}

// Empty reports whether nothing is to be written.
func (s Settings) Empty() bool {
	return s.Hostname == "" && s.Timezone == "" && len(s.Users) == 0 && s.WiFi == nil && s.Keyboard == "" && len(s.UserData) == 0
}

// hasSettings reports whether any setting besides a user-data file is given.
func (s Settings) hasSettings() bool {
	u := s
	u.UserData = nil
	return !u.Empty()
}

var keyboardRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,15}$`)

// KnownFormat reports whether f is an init format Kiln knows (FormatAuto included): a
// catalogue's other init_format values are left to detection.
func KnownFormat(f string) bool {
	switch f {
	case FormatAuto, FormatCloudInit, FormatCloudInitRPi, FormatSystemd, FormatNone:
		return true
	}
	return false
}

// Check checks every setting; errors name the setting and say how to fix it. The PSK is never echoed.
func (s Settings) Check() error {
	var errs []error
	for _, u := range s.Users {
		if len(u.SSHKeyFiles) > 0 {
			errs = append(errs, fmt.Errorf("user %s: read the SSH key files into SSHKeys first", u.Name))
		}
	}
	if err := recipe.CheckFirstBoot(recipe.System{Hostname: s.Hostname, Timezone: s.Timezone, Users: s.Users, WiFi: s.WiFi}); err != nil {
		errs = append(errs, err)
	}
	if s.Keyboard != "" && !keyboardRe.MatchString(s.Keyboard) {
		errs = append(errs, fmt.Errorf("keyboard %q: give an XKB layout such as \"us\", \"de\" or \"gb\"", s.Keyboard))
	}
	if !KnownFormat(s.Format) {
		errs = append(errs, fmt.Errorf("init format %q: use cloudinit, cloudinit-rpi, systemd or none (or leave it out to look at the image)", s.Format))
	}
	if len(s.UserData) > MaxUserData {
		errs = append(errs, fmt.Errorf("user-data of %d bytes is larger than %d KiB", len(s.UserData), MaxUserData>>10))
	} else if len(s.UserData) > 0 && s.hasSettings() {
		if !isCloudConfig(s.UserData) {
			errs = append(errs, errors.New("the user-data file is not #cloud-config, so the settings cannot be merged into it: put them into the file, or give the settings without it"))
		} else if _, err := parseUserData(s.UserData); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isCloudConfig reports whether user-data is a #cloud-config document (not a script or MIME archive).
func isCloudConfig(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, " \t\r") == "#cloud-config"
}
