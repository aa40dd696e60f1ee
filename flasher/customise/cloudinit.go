package customise

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// Files are the cloud-init NoCloud files written to the boot partition; nil ones are left as the
// image has them.
type Files struct {
	UserData      []byte
	NetworkConfig []byte
	MetaData      []byte
}

// rpiGroups are the groups Raspberry Pi OS gives its first user (hardware access and sudo).
const rpiGroups = "users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo"

type ciUser struct {
	Name       string   `yaml:"name"`
	Groups     string   `yaml:"groups,omitempty"`
	Shell      string   `yaml:"shell"`
	Sudo       string   `yaml:"sudo"`
	LockPasswd bool     `yaml:"lock_passwd"`
	Passwd     string   `yaml:"passwd,omitempty"`
	Keys       []string `yaml:"ssh_authorized_keys,omitempty"`
}

type ciConfig struct {
	Hostname    string            `yaml:"hostname,omitempty"`
	ManageHosts bool              `yaml:"manage_etc_hosts,omitempty"`
	Timezone    string            `yaml:"timezone,omitempty"`
	Keyboard    map[string]string `yaml:"keyboard,omitempty"`
	Users       []ciUser          `yaml:"users,omitempty"`
	Chpasswd    map[string]bool   `yaml:"chpasswd,omitempty"`
	SSHPwauth   *bool             `yaml:"ssh_pwauth,omitempty"`
	Runcmd      [][]string        `yaml:"runcmd,omitempty"`
}

// Render makes the cloud-init files for format (FormatCloudInit or FormatCloudInitRPi).
//
// user-data: hostname (with /etc/hosts kept in step), timezone, keyboard layout, and the users, each
// with sudo rights, its password hash (password login on) or only its keys (password login off for
// SSH). Listing users replaces the image's default user (ubuntu, pi). On Raspberry Pi OS the users
// get its hardware groups, the SSH server, off by default there, is enabled, and the Wi-Fi country
// is set with raspi-config, which unblocks the radio. A user's own
// #cloud-config file is merged (see Merge); any other user-data file is written as given.
//
// network-config (only with Wi-Fi): netplan version 2 with DHCP on eth0 and wlan0, the regulatory
// country and the network, hidden or not. meta-data: an instance-id derived from the files, so
// cloud-init applies new settings once, and the hostname.
func Render(s Settings, format string) (Files, error) {
	var f Files
	rpi := format == FormatCloudInitRPi
	if s.hasSettings() {
		c := ciConfig{Hostname: s.Hostname, ManageHosts: s.Hostname != "", Timezone: s.Timezone}
		if s.Keyboard != "" {
			c.Keyboard = map[string]string{"layout": s.Keyboard, "model": "pc105"}
		}
		pw, keys := false, false
		for _, u := range s.Users {
			cu := ciUser{Name: u.Name, Shell: "/bin/bash", Sudo: "ALL=(ALL) NOPASSWD:ALL", Keys: u.SSHKeys}
			if rpi {
				cu.Groups = rpiGroups
			} else {
				cu.Groups = "adm,sudo"
			}
			switch u.PasswordHash {
			case "", "!", "*":
				cu.LockPasswd = true
			default:
				cu.Passwd, pw = u.PasswordHash, true
			}
			keys = keys || len(u.SSHKeys) > 0
			c.Users = append(c.Users, cu)
		}
		if pw || keys {
			c.SSHPwauth = &pw
			if pw {
				c.Chpasswd = map[string]bool{"expire": false}
			}
			if rpi {
				c.Runcmd = [][]string{{"systemctl", "enable", "--now", "ssh"}}
			}
		}
		if w := s.WiFi; rpi && w != nil && w.Country != "" {
			// Raspberry Pi OS keeps Wi-Fi blocked until a country is set.
			c.Runcmd = append(c.Runcmd, []string{"raspi-config", "nonint", "do_wifi_country", w.Country})
		}
		body, err := yaml.Marshal(c)
		if err != nil {
			return f, fmt.Errorf("render user-data: %w", err)
		}
		f.UserData = append([]byte("#cloud-config\n# first-boot settings written by Kiln\n"), body...)
		if len(s.UserData) > 0 {
			if f.UserData, err = Merge(f.UserData, s.UserData); err != nil {
				return f, err
			}
		}
	} else if len(s.UserData) > 0 {
		f.UserData = s.UserData
	}
	if w := s.WiFi; w != nil {
		ap := map[string]any{"password": w.PSK}
		if s.WiFiHidden {
			ap["hidden"] = true
		}
		wlan := map[string]any{"dhcp4": true, "optional": true, "access-points": map[string]any{w.SSID: ap}}
		if w.Country != "" {
			wlan["regulatory-domain"] = w.Country
		}
		net := map[string]any{
			"version":   2,
			"ethernets": map[string]any{"eth0": map[string]any{"dhcp4": true, "optional": true}},
			"wifis":     map[string]any{"wlan0": wlan},
		}
		if rpi {
			net["renderer"] = "NetworkManager"
		}
		body, err := yaml.Marshal(net)
		if err != nil {
			return f, fmt.Errorf("render network-config: %w", err)
		}
		f.NetworkConfig = append([]byte("# network settings written by Kiln (netplan version 2)\n"), body...)
	}
	h := sha256.New()
	h.Write(f.UserData)
	h.Write([]byte{0})
	h.Write(f.NetworkConfig)
	meta := map[string]string{"instance-id": "kiln-" + hex.EncodeToString(h.Sum(nil))[:16]}
	if s.Hostname != "" {
		meta["local-hostname"] = s.Hostname
	}
	body, err := yaml.Marshal(meta)
	if err != nil {
		return f, fmt.Errorf("render meta-data: %w", err)
	}
	f.MetaData = body
	return f, nil
}

// appendKeys are the top-level keys whose lists Merge concatenates (Kiln's entries first).
var appendKeys = []string{"users", "runcmd", "bootcmd", "packages", "write_files", "ssh_authorized_keys", "groups"}

// Merge merges a user's #cloud-config document into Kiln's: a top-level key only in one document is
// kept; a key in both takes the user's value, except the lists in appendKeys (users, runcmd,
// bootcmd, packages, write_files, ssh_authorized_keys, groups), which are concatenated with Kiln's
// entries first. The user's comments are dropped; the key order is Kiln's, then the user's new keys.
func Merge(kiln, user []byte) ([]byte, error) {
	k, err := parseUserData(kiln)
	if err != nil {
		return nil, err
	}
	u, err := parseUserData(user)
	if err != nil {
		return nil, err
	}
	k.HeadComment = ""
	if len(k.Content) > 0 {
		k.Content[0].HeadComment = ""
	}
	for i := 0; i+1 < len(u.Content); i += 2 {
		key, val := u.Content[i], u.Content[i+1]
		j := slices.IndexFunc(pairs(k), func(n *yaml.Node) bool { return n.Value == key.Value })
		if j < 0 {
			k.Content = append(k.Content, key, val)
			continue
		}
		old := k.Content[2*j+1]
		if slices.Contains(appendKeys, key.Value) && old.Kind == yaml.SequenceNode && val.Kind == yaml.SequenceNode {
			old.Content = append(old.Content, val.Content...)
			continue
		}
		k.Content[2*j+1] = val
	}
	var b bytes.Buffer
	b.WriteString("#cloud-config\n# first-boot settings written by Kiln, merged with your user-data\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(k); err != nil {
		return nil, fmt.Errorf("merge user-data: %w", err)
	}
	return b.Bytes(), nil
}

// pairs returns the keys of a mapping node, in order.
func pairs(m *yaml.Node) []*yaml.Node {
	var out []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, m.Content[i])
	}
	return out
}

// parseUserData parses a #cloud-config document into its top-level mapping. Aliases are refused
// (they could expand without bound) as are documents that are not a mapping.
func parseUserData(b []byte) (*yaml.Node, error) {
	if len(b) > MaxUserData {
		return nil, fmt.Errorf("user-data: %d bytes is larger than %d KiB", len(b), MaxUserData>>10)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("user-data: not valid YAML: %w", err)
	}
	if doc.Kind == 0 { // only comments
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("user-data: a #cloud-config document must be a mapping of keys such as hostname: and users:")
	}
	if hasAlias(&doc, 0) {
		return nil, errors.New("user-data: YAML aliases (*name) and deep nesting are not supported in a merged file; write the values out")
	}
	m := doc.Content[0]
	seen := map[string]bool{}
	for _, key := range pairs(m) {
		if seen[key.Value] {
			return nil, fmt.Errorf("user-data: key %q appears twice", key.Value)
		}
		seen[key.Value] = true
	}
	return m, nil
}

func hasAlias(n *yaml.Node, depth int) bool {
	if n.Kind == yaml.AliasNode || depth > 64 {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c, depth+1) {
			return true
		}
	}
	return false
}
