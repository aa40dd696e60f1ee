package initramfs

import (
	"archive/zip"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)
	userRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// busybox's own crypt (CONFIG_USE_BB_CRYPT) verifies MD5, SHA-256 and SHA-512 crypt and DES.
	hashRE  = regexp.MustCompile(`^\$(1|5|6)\$(rounds=[0-9]+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]+$`)
	posixTZ = regexp.MustCompile(`^<?[A-Za-z+\-0-9]{3,}>?[+-]?[0-9]`)
)

func addSettings(t *tree, s *Spec) error {
	host := s.Hostname
	if host == "" {
		host = "kiln"
	}
	if len(host) > 253 || !hostnameRE.MatchString(host) {
		return fmt.Errorf("%w: hostname %q: use letters, digits and '-' (at most 63 per label)", ErrBadSetting, host)
	}
	if err := t.file("etc/hostname", 0o644, []byte(host+"\n"), "recipe:system.hostname"); err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host)
	if err := t.file("etc/hosts", 0o644, []byte(hosts), "kiln"); err != nil {
		return err
	}
	issue := fmt.Sprintf("%s %s (Kiln) \\n \\l\n\n", s.Name, s.Version)
	if err := t.file("etc/issue", 0o644, []byte(issue), "kiln"); err != nil {
		return err
	}
	shells := "/bin/sh\n/bin/ash\n"
	if loginShell(t) == "/bin/bash" {
		shells += "/bin/bash\n"
	}
	if err := t.file("etc/shells", 0o644, []byte(shells), "kiln"); err != nil {
		return err
	}
	if err := addUsers(t, s); err != nil {
		return err
	}
	if err := addTimezone(t, s.Timezone); err != nil {
		return err
	}
	return addWiFi(t, s.WiFi)
}

func addUsers(t *tree, s *Spec) error {
	day := s.SourceDateEpoch / 86400
	type account struct {
		name, hash, home string
		uid              int
		keys             []string
	}
	accounts := []*account{{name: "root", uid: 0, home: "/root"}}
	next := 1000
	seen := map[int]string{0: "root", 65534: "nobody"}
	for _, u := range s.Users {
		if !userRE.MatchString(u.Name) || u.Name == "nobody" {
			return fmt.Errorf("%w: user name %q: use lower-case letters, digits, '_' and '-', starting with a letter", ErrBadSetting, u.Name)
		}
		if u.PasswordHash != "" && !hashRE.MatchString(u.PasswordHash) {
			kind := "not a crypt(3) hash"
			if strings.HasPrefix(u.PasswordHash, "$y$") {
				kind = "a yescrypt hash, which busybox login cannot verify"
			}
			return fmt.Errorf("%w: user %s: password_hash is %s: make a SHA-512 one with `mkpasswd -m sha-512` or `openssl passwd -6`",
				ErrBadSetting, u.Name, kind)
		}
		for _, k := range u.SSHKeys {
			if strings.ContainsAny(k, "\r\n") {
				return fmt.Errorf("%w: user %s: an SSH key spans several lines: give one key per entry", ErrBadSetting, u.Name)
			}
		}
		if u.Name == "root" {
			accounts[0].hash, accounts[0].keys = u.PasswordHash, u.SSHKeys
			continue
		}
		uid := u.UID
		if uid < 0 {
			for seen[next] != "" {
				next++
			}
			uid = next
		}
		if other, dup := seen[uid]; dup {
			return fmt.Errorf("%w: user %s: uid %d is taken by %s", ErrBadSetting, u.Name, uid, other)
		}
		for _, a := range accounts {
			if a.name == u.Name {
				return fmt.Errorf("%w: user %s is listed twice", ErrBadSetting, u.Name)
			}
		}
		seen[uid] = u.Name
		accounts = append(accounts, &account{name: u.Name, hash: u.PasswordHash, uid: uid,
			home: "/home/" + u.Name, keys: u.SSHKeys})
	}

	var passwd, shadow, group strings.Builder
	group.WriteString("root:x:0:\ntty:x:5:\n")
	for _, a := range accounts {
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:%s\n", a.name, a.uid, a.uid, a.name, a.home, loginShell(t))
		hash := a.hash
		if hash == "" {
			// No password login. "*" rather than "!": an SSH server would still accept keys.
			hash = "*"
		}
		fmt.Fprintf(&shadow, "%s:%s:%d:0:99999:7:::\n", a.name, hash, day)
		if a.uid != 0 {
			fmt.Fprintf(&group, "%s:x:%d:\n", a.name, a.uid)
		}
	}
	passwd.WriteString("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
	shadow.WriteString(fmt.Sprintf("nobody:*:%d:0:99999:7:::\n", day))
	group.WriteString("nogroup:x:65534:\n")
	// The system accounts of installed packages (base-passwd's, those their scripts added) follow
	// the recipe's.
	for _, f := range []struct {
		p string
		b *strings.Builder
	}{{"etc/passwd", &passwd}, {"etc/shadow", &shadow}, {"etc/group", &group}} {
		keepAccounts(t, f.p, f.b)
	}
	for _, f := range []struct {
		p    string
		mode fs.FileMode
		b    string
	}{{"etc/passwd", 0o644, passwd.String()}, {"etc/shadow", 0o600, shadow.String()}, {"etc/group", 0o644, group.String()}} {
		if err := t.file(f.p, f.mode, []byte(f.b), "recipe:system.users"); err != nil {
			return err
		}
	}

	for _, a := range accounts {
		id := uint32(a.uid)
		home := strings.TrimPrefix(a.home, "/")
		if a.uid != 0 {
			if err := t.add(File{Path: home, Mode: fs.ModeDir | 0o700, UID: id, GID: id, Origin: "recipe:system.users"}); err != nil {
				return err
			}
		}
		if len(a.keys) == 0 {
			continue
		}
		if err := t.add(File{Path: home + "/.ssh", Mode: fs.ModeDir | 0o700, UID: id, GID: id, Origin: "recipe:system.users"}); err != nil {
			return err
		}
		keys := strings.Join(a.keys, "\n") + "\n"
		if err := t.add(File{Path: home + "/.ssh/authorized_keys", Mode: 0o600, UID: id, GID: id,
			Data: []byte(keys), Origin: "recipe:system.users"}); err != nil {
			return err
		}
	}
	return nil
}

// addWiFi writes wpa_supplicant.conf with the pre-shared key already derived (PBKDF2 as WPA
// does), so the passphrase itself never lands on the device.
func addWiFi(t *tree, w *WiFi) error {
	if w == nil || w.SSID == "" {
		return nil
	}
	if len(w.SSID) > 32 {
		return fmt.Errorf("%w: Wi-Fi SSID %q is longer than 32 bytes", ErrBadSetting, w.SSID)
	}
	var b strings.Builder
	b.WriteString("# Written by kiln.\nctrl_interface=/run/wpa_supplicant\nupdate_config=0\n")
	if w.Country != "" {
		if len(w.Country) != 2 || strings.ToUpper(w.Country) != w.Country {
			return fmt.Errorf("%w: Wi-Fi country %q: use an ISO 3166 code such as DE or US", ErrBadSetting, w.Country)
		}
		fmt.Fprintf(&b, "country=%s\n", w.Country)
	}
	fmt.Fprintf(&b, "\nnetwork={\n\tssid=%s\n", hex.EncodeToString([]byte(w.SSID)))
	switch {
	case w.PSK == "":
		b.WriteString("\tkey_mgmt=NONE\n")
	case len(w.PSK) == 64 && isHex(w.PSK):
		fmt.Fprintf(&b, "\tpsk=%s\n", strings.ToLower(w.PSK))
	case len(w.PSK) >= 8 && len(w.PSK) <= 63:
		key, err := pbkdf2.Key(sha1.New, w.PSK, []byte(w.SSID), 4096, 32)
		if err != nil {
			return fmt.Errorf("Wi-Fi key: %w", err)
		}
		fmt.Fprintf(&b, "\tpsk=%s\n", hex.EncodeToString(key))
	default:
		return fmt.Errorf("%w: the Wi-Fi passphrase must have 8 to 63 characters (or be 64 hex digits)", ErrBadSetting)
	}
	b.WriteString("}\n")
	if err := t.dir("etc/wpa_supplicant", 0o755); err != nil {
		return err
	}
	return t.file("etc/wpa_supplicant/wpa_supplicant.conf", 0o600, []byte(b.String()), "recipe:system.wifi")
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// addTimezone writes /etc/TZ (a POSIX TZ string: busybox and the static C library read TZ, see
// /etc/profile), and for IANA names also /etc/localtime and /etc/timezone.
func addTimezone(t *tree, tz string) error {
	switch tz {
	case "", "UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "UCT", "Zulu":
		return t.file("etc/TZ", 0o644, []byte("UTC0\n"), "recipe:system.timezone")
	}
	if !strings.Contains(tz, "/") && posixTZ.MatchString(tz) {
		return t.file("etc/TZ", 0o644, []byte(tz+"\n"), "recipe:system.timezone")
	}
	data, err := TZ(tz)
	if err != nil {
		return err
	}
	footer := tzFooter(data)
	if footer == "" {
		return fmt.Errorf("%w: timezone %q: the zoneinfo file has no POSIX rule; give one such as CET-1CEST,M3.5.0,M10.5.0/3", ErrBadSetting, tz)
	}
	if err := t.file("etc/TZ", 0o644, []byte(footer+"\n"), "recipe:system.timezone"); err != nil {
		return err
	}
	if err := t.file("etc/localtime", 0o644, data, "zoneinfo:"+tz); err != nil {
		return err
	}
	return t.file("etc/timezone", 0o644, []byte(tz+"\n"), "recipe:system.timezone")
}

// TZ returns the TZif data of an IANA time zone from the host's zoneinfo (or Go's zoneinfo.zip).
func TZ(name string) ([]byte, error) {
	if name == "" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("%w: timezone %q", ErrBadSetting, name)
	}
	dirs := []string{os.Getenv("ZONEINFO"), "/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/zoneinfo", "/etc/zoneinfo"}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(name))); err == nil && bytes.HasPrefix(b, []byte("TZif")) {
			return b, nil
		}
	}
	if z, err := zip.OpenReader(filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")); err == nil {
		defer z.Close()
		if f, err := z.Open(path.Clean(name)); err == nil {
			defer f.Close()
			if b, err := io.ReadAll(f); err == nil && bytes.HasPrefix(b, []byte("TZif")) {
				return b, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: timezone %q is not in this computer's zoneinfo: check the name (e.g. Europe/Berlin) or give a POSIX TZ string such as CET-1CEST,M3.5.0,M10.5.0/3",
		ErrBadSetting, name)
}

// tzFooter returns the POSIX TZ rule at the end of a TZif version 2+ file ("\nCET-1CEST,…\n").
func tzFooter(b []byte) string {
	if len(b) < 5 || b[4] < '2' || !bytes.HasSuffix(b, []byte("\n")) {
		return ""
	}
	b = b[:len(b)-1]
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		return ""
	}
	return string(b[i+1:])
}

// keepAccounts appends to b the lines of the file p already in the tree (from packages) whose
// account name b does not have yet.
func keepAccounts(t *tree, p string, b *strings.Builder) {
	old, ok := t.files[p]
	if !ok || !old.Mode.IsRegular() {
		return
	}
	have := map[string]bool{}
	for _, l := range strings.Split(b.String(), "\n") {
		name, _, _ := strings.Cut(l, ":")
		have[name] = true
	}
	for _, l := range strings.Split(string(old.Data), "\n") {
		name, _, ok := strings.Cut(l, ":")
		if !ok || name == "" || have[name] || strings.HasPrefix(name, "#") {
			continue
		}
		have[name] = true
		b.WriteString(l + "\n")
	}
}

// loginShell is the users' shell: bash when a package installed it (busybox's ash runs its own
// applets before the packages' programs of the same name, such as dpkg), else /bin/sh.
func loginShell(t *tree) string {
	if f, ok := t.files[t.resolveParents("bin/bash")]; ok && f.Mode.IsRegular() {
		return "/bin/bash"
	}
	return "/bin/sh"
}
