package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher"
	"github.com/kilnproject/kiln/flasher/customise"
)

// settingsFlags are kiln flash's first-boot settings for third-party images.
type settingsFlags struct {
	hostname, user, passwordHash, wifiSSID, wifiCountry, timezone, keyboard, cloudInit, initFormat string
	passwordStdin, wifiPSKStdin, wifiHidden                                                        bool
	keyFiles, keys                                                                                 listFlag
}

// flashSettingsFlags registers the first-boot settings flags on fs; the returned function sets the
// flasher's Customise option from them after parsing (when any is given). declared is the
// catalogue's init_format for the image, used unless --init-format is given.
func flashSettingsFlags(fs *flag.FlagSet) func(env *Env, opts *flasher.Options, declared string) error {
	s := &settingsFlags{}
	fs.StringVar(&s.hostname, "hostname", "", "first-boot setting: the system's hostname (cloud-init images)")
	fs.StringVar(&s.user, "user", "", "first-boot setting: create this user (with sudo), replacing the image's default user")
	fs.StringVar(&s.passwordHash, "password-hash", "", "first-boot setting: the user's password as a crypt(3) hash (mkpasswd -m sha-512)")
	fs.BoolVar(&s.passwordStdin, "password-stdin", false, "first-boot setting: read the user's password from standard input (first line) and store its hash")
	fs.Var(&s.keyFiles, "ssh-key", "first-boot setting: authorized_keys FILE for the user (repeatable); with keys only, SSH password login is off")
	fs.Var(&s.keys, "ssh-key-text", "first-boot setting: one public key line for the user (repeatable)")
	fs.StringVar(&s.wifiSSID, "wifi-ssid", "", "first-boot setting: Wi-Fi network name")
	fs.BoolVar(&s.wifiPSKStdin, "wifi-psk-stdin", false, "first-boot setting: read the Wi-Fi passphrase from standard input (the line after the password)")
	fs.StringVar(&s.wifiCountry, "wifi-country", "", "first-boot setting: Wi-Fi regulatory country, two letters such as DE or US")
	fs.BoolVar(&s.wifiHidden, "wifi-hidden", false, "first-boot setting: the Wi-Fi network does not broadcast its name")
	fs.StringVar(&s.timezone, "timezone", "", "first-boot setting: IANA timezone such as Europe/Berlin")
	fs.StringVar(&s.keyboard, "keyboard", "", "first-boot setting: keyboard layout such as us, de or gb")
	fs.StringVar(&s.cloudInit, "cloud-init", "", "first-boot setting: your own user-data FILE, written as given, or merged with the settings above (#cloud-config only)")
	fs.StringVar(&s.initFormat, "init-format", "", "the image's first-boot format: cloudinit, cloudinit-rpi, systemd or none (default: look at its boot partition)")
	return func(env *Env, opts *flasher.Options, declared string) error {
		set, err := s.settings(env.Stdin, env.Stderr)
		if err != nil || set.Empty() {
			return err
		}
		switch {
		case set.Format != customise.FormatAuto:
		case customise.KnownFormat(declared):
			set.Format = declared
		default:
			env.Log.Warnf("the catalogue's init_format %q is unknown to Kiln: looking at the image's boot partition instead", declared)
		}
		c, err := customise.New(set)
		if err != nil {
			return fmt.Errorf("first-boot settings: %w", err)
		}
		opts.Customise = c
		return nil
	}
}

// settings turns the flags into customise.Settings, reading secrets and files.
func (s *settingsFlags) settings(stdin io.Reader, prompt io.Writer) (customise.Settings, error) {
	set := customise.Settings{Hostname: s.hostname, Timezone: s.timezone, Keyboard: s.keyboard, Format: s.initFormat, WiFiHidden: s.wifiHidden}
	if s.passwordHash != "" && s.passwordStdin {
		return set, fmt.Errorf("%w: give --password-hash or --password-stdin, not both", errUsage)
	}
	secretUser := s.passwordHash != "" || s.passwordStdin || len(s.keyFiles) > 0 || len(s.keys) > 0
	if secretUser && s.user == "" {
		return set, fmt.Errorf("%w: a password or SSH key needs --user NAME", errUsage)
	}
	if s.wifiSSID == "" && (s.wifiPSKStdin || s.wifiCountry != "" || s.wifiHidden) {
		return set, fmt.Errorf("%w: Wi-Fi settings need --wifi-ssid", errUsage)
	}
	if s.wifiSSID != "" && !s.wifiPSKStdin {
		return set, fmt.Errorf("%w: --wifi-ssid needs --wifi-psk-stdin (open networks are not supported)", errUsage)
	}
	if s.user != "" {
		u := recipe.User{Name: s.user, PasswordHash: s.passwordHash}
		if s.passwordStdin {
			pw, err := readSecret(stdin, prompt, "Password for "+s.user+": ")
			if err != nil {
				return set, fmt.Errorf("--password-stdin: %w", err)
			}
			if pw == "" {
				return set, errors.New("--password-stdin: the password is empty")
			}
			if u.PasswordHash, err = pwhash.Hash(pw); err != nil {
				return set, err
			}
		}
		for _, f := range s.keyFiles {
			keys, err := readKeyFile(f)
			if err != nil {
				return set, err
			}
			u.SSHKeys = append(u.SSHKeys, keys...)
		}
		for _, k := range s.keys {
			u.SSHKeys = append(u.SSHKeys, strings.TrimSpace(k))
		}
		set.Users = []recipe.User{u}
	}
	if s.wifiSSID != "" {
		psk, err := readSecret(stdin, prompt, "Wi-Fi passphrase for "+s.wifiSSID+": ")
		if err != nil {
			return set, fmt.Errorf("--wifi-psk-stdin: %w", err)
		}
		set.WiFi = &recipe.WiFi{SSID: s.wifiSSID, PSK: psk, Country: strings.ToUpper(s.wifiCountry)}
	}
	if s.cloudInit != "" {
		b, err := readLimited(s.cloudInit, customise.MaxUserData)
		if err != nil {
			return set, fmt.Errorf("--cloud-init: %w", err)
		}
		set.UserData = b
	}
	return set, nil
}

// readSecret reads one line: without echo from a terminal (after a prompt), else from the stream
// byte by byte, so that later readers of stdin (the confirmation) get the rest.
func readSecret(stdin io.Reader, prompt io.Writer, msg string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, msg)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		return string(b), err
	}
	var line []byte
	one := make([]byte, 1)
	for len(line) < 4096 {
		n, err := stdin.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimSuffix(string(line), "\r"), nil
			}
			line = append(line, one[0])
		}
		if err == io.EOF && len(line) > 0 {
			return string(line), nil
		}
		if err != nil {
			return "", fmt.Errorf("read standard input: %w", err)
		}
	}
	return "", errors.New("the line on standard input is longer than 4096 bytes")
}

// readKeyFile reads the public keys of an authorized_keys or .pub file.
func readKeyFile(path string) ([]string, error) {
	b, err := readLimited(path, 256<<10)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key: %w", err)
	}
	keys, err := recipe.ParseAuthorizedKeys(b)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key %s: %w", path, err)
	}
	return keys, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d KiB", path, limit>>10)
	}
	return b, nil
}
