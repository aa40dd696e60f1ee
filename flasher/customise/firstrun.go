package customise

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Raspberry Pi Imager's systemd format (Raspberry Pi OS before Trixie): a shell script firstrun.sh
// on the boot partition, run once by systemd from the kernel command line, which configures the
// system through Raspberry Pi OS's own helpers (imager_custom, userconf) and then removes itself.
const (
	firstrunFile = "firstrun.sh"
	// firstrunArgs start the script once: systemd runs it instead of the default target, then
	// reboots into the configured system.
	firstrunArgs = "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// wpaPSK is the WPA pre-shared key as wpa_supplicant stores it: the passphrase hashed with the SSID
// (PBKDF2-SHA1, 4096 rounds), so the script does not carry the passphrase itself. A 64-digit hex
// key is already one.
func wpaPSK(ssid, psk string) (string, error) {
	if len(psk) == 64 {
		if _, err := hex.DecodeString(psk); err == nil {
			return strings.ToLower(psk), nil
		}
	}
	k, err := pbkdf2.Key(sha1.New, psk, []byte(ssid), 4096, 32)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(k), nil
}

// RenderFirstrun writes the settings as Imager's firstrun.sh. Raspberry Pi OS of this age renames
// its first user, so one user at most is taken; a user-data file needs cloud-init.
func RenderFirstrun(s Settings) ([]byte, error) {
	if len(s.UserData) > 0 {
		return nil, errors.New("a user-data file needs an image with cloud-init; this one takes Raspberry Pi Imager's firstrun.sh (init format systemd)")
	}
	if len(s.Users) > 1 {
		return nil, fmt.Errorf("%d users given: images of init format systemd take one (it replaces the image's first user)", len(s.Users))
	}
	var b bytes.Buffer
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	const custom = "/usr/lib/raspberrypi-sys-mods/imager_custom"
	line("#!/bin/sh")
	line("# First-boot settings written by Kiln; runs once, then removes itself.")
	line("set +e")
	line("")
	if h := s.Hostname; h != "" {
		line(`CURRENT_HOSTNAME=$(tr -d " \t\n\r" </etc/hostname)`)
		line("if [ -f %s ]; then", custom)
		line("   %s set_hostname %s", custom, shellQuote(h))
		line("else")
		line("   echo %s >/etc/hostname", shellQuote(h))
		line(`   sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\t%s/g" /etc/hosts`, h) // hostnames are [a-z0-9-.]
		line("fi")
	}
	line("FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)")
	line("FIRSTUSERHOME=$(getent passwd 1000 | cut -d: -f6)")
	if len(s.Users) == 1 {
		u := s.Users[0]
		var keys []string
		for _, k := range u.SSHKeys {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			quoted := make([]string, len(keys))
			for i, k := range keys {
				quoted[i] = shellQuote(k)
			}
			line("if [ -f %s ]; then", custom)
			line("   %s enable_ssh -k %s", custom, strings.Join(quoted, " "))
			line("else")
			line(`   install -o "$FIRSTUSER" -m 700 -d "$FIRSTUSERHOME/.ssh"`)
			line(`   printf '%%s\n' %s >"$FIRSTUSERHOME/.ssh/authorized_keys"`, strings.Join(quoted, " "))
			line(`   chown "$FIRSTUSER:$FIRSTUSER" "$FIRSTUSERHOME/.ssh/authorized_keys"`)
			line(`   chmod 600 "$FIRSTUSERHOME/.ssh/authorized_keys"`)
			line(`   echo 'PasswordAuthentication no' >>/etc/ssh/sshd_config`)
			line("   systemctl enable ssh")
			line("fi")
		}
		line("if [ -f /usr/lib/userconf-pi/userconf ]; then")
		line("   /usr/lib/userconf-pi/userconf %s %s", shellQuote(u.Name), shellQuote(u.PasswordHash))
		line("else")
		if u.PasswordHash != "" {
			line(`   printf '%%s:%%s\n' "$FIRSTUSER" %s | chpasswd -e`, shellQuote(u.PasswordHash))
		}
		line(`   if [ "$FIRSTUSER" != %s ]; then`, shellQuote(u.Name))
		line(`      usermod -l %s "$FIRSTUSER"`, shellQuote(u.Name))
		line(`      usermod -m -d %s %s`, shellQuote("/home/"+u.Name), shellQuote(u.Name))
		line(`      groupmod -n %s "$FIRSTUSER"`, shellQuote(u.Name))
		line("   fi")
		line("fi")
	}
	if w := s.WiFi; w != nil {
		psk, err := wpaPSK(w.SSID, w.PSK)
		if err != nil {
			return nil, fmt.Errorf("Wi-Fi: %w", err)
		}
		hidden := ""
		if s.WiFiHidden {
			hidden = "-h "
		}
		line("if [ -f %s ]; then", custom)
		line("   %s set_wlan %s%s %s %s", custom, hidden, shellQuote(w.SSID), shellQuote(psk), shellQuote(w.Country))
		line("else")
		line("   cat >/etc/wpa_supplicant/wpa_supplicant.conf <<'WPAEOF'")
		if w.Country != "" {
			line("country=%s", w.Country)
		}
		line("ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev")
		line("ap_scan=1")
		line("update_config=1")
		line("network={")
		if s.WiFiHidden {
			line("\tscan_ssid=1")
		}
		line("\tssid=%s", hex.EncodeToString([]byte(w.SSID))) // hex: any bytes, no quoting
		line("\tpsk=%s", psk)
		line("}")
		line("WPAEOF")
		line("   chmod 600 /etc/wpa_supplicant/wpa_supplicant.conf")
		line("   rfkill unblock wifi")
		line("   for f in /var/lib/systemd/rfkill/*:wlan; do echo 0 >\"$f\"; done")
		line("fi")
	}
	if s.Keyboard != "" || s.Timezone != "" {
		line("if [ -f %s ]; then", custom)
		if s.Keyboard != "" {
			line("   %s set_keymap %s", custom, shellQuote(s.Keyboard))
		}
		if s.Timezone != "" {
			line("   %s set_timezone %s", custom, shellQuote(s.Timezone))
		}
		line("else")
		if s.Timezone != "" {
			line("   rm -f /etc/localtime")
			line("   echo %s >/etc/timezone", shellQuote(s.Timezone))
			line("   dpkg-reconfigure -f noninteractive tzdata")
		}
		if s.Keyboard != "" {
			line("   sed -i 's/^XKBLAYOUT=.*/XKBLAYOUT=\"%s\"/' /etc/default/keyboard", s.Keyboard) // layouts are [a-z0-9_,-]
			line("   dpkg-reconfigure -f noninteractive keyboard-configuration")
		}
		line("fi")
	}
	line("rm -f /boot/firstrun.sh")
	line("sed -i 's| systemd.run.*||g' /boot/cmdline.txt")
	line("exit 0")
	return b.Bytes(), nil
}

// withFirstrun returns cmdline.txt (one line) with the arguments that run firstrun.sh, replacing
// any earlier ones.
func withFirstrun(cmdline []byte) ([]byte, error) {
	s := strings.TrimSpace(string(cmdline))
	if s == "" || strings.ContainsAny(s, "\n\r") {
		return nil, errors.New("cmdline.txt is not one line of kernel arguments")
	}
	if i := strings.Index(s, " systemd.run"); i >= 0 {
		s = s[:i]
	}
	return []byte(s + " " + firstrunArgs + "\n"), nil
}
