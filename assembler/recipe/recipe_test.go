package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/internal/tomllines"
)

const fiveLines = `kiln = 1
name = "garden"
version = "1.2.0"
[system]
hostname = "garden-pi"
`

func TestDefaultIsValid(t *testing.T) {
	r := Default()
	if err := r.Validate(); err != nil {
		t.Fatalf("default recipe does not validate: %v", err)
	}
	if r.Name != "kiln-tiny" || r.System.Hostname != "kiln" || r.Board.DiskSize != 512*MiB || r.Board.ESPSize != 192*MiB {
		t.Errorf("unexpected default values: %+v", r)
	}
	if len(r.Kernel.Modules) == 0 || r.Kernel.Package != "linux-image-amd64" {
		t.Errorf("default kernel section missing: %+v", r.Kernel)
	}
	// Default returns independent copies.
	r.Kernel.Modules[0] = "changed"
	if Default().Kernel.Modules[0] == "changed" {
		t.Error("Default shares state between calls")
	}
}

func TestFiveLineRecipeTakesDefaults(t *testing.T) {
	r, err := Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(fiveLines))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if r.Name != "garden" || r.Version != "1.2.0" || r.System.Hostname != "garden-pi" {
		t.Errorf("recipe's own values lost: %+v", r)
	}
	if !reflect.DeepEqual(r.Board, d.Board) || !reflect.DeepEqual(r.Kernel, d.Kernel) ||
		!reflect.DeepEqual(r.Update, d.Update) || !reflect.DeepEqual(r.Data, d.Data) {
		t.Errorf("omitted sections did not take the defaults:\n got %+v\nwant %+v", r, d)
	}
	if r.System.Busybox != d.System.Busybox || r.System.Timezone != d.System.Timezone {
		t.Errorf("omitted [system] fields did not take the defaults: %+v", r.System)
	}
	if r.Arch != "x86_64" || r.Description != d.Description {
		t.Errorf("top-level defaults lost: arch %q description %q", r.Arch, r.Description)
	}
}

func TestOverlayKeepsSiblingDefaults(t *testing.T) {
	r, err := Parse("kiln.toml", []byte(fiveLines+"[board]\ndisk_size = \"1G\"\n[kernel]\nmodules = [\"e1000\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Board.DiskSize != GiB || r.Board.ESPSize != 192*MiB || r.Board.Firmware != "uefi" {
		t.Errorf("board overlay wrong: %+v", r.Board)
	}
	if !reflect.DeepEqual(r.Kernel.Modules, []string{"e1000"}) || r.Kernel.Package != "linux-image-amd64" {
		t.Errorf("kernel overlay wrong: %+v", r.Kernel)
	}
}

func TestFullRecipeAndMarshalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "motd"), []byte("hello\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "id.pub"), []byte(testKey+"\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "overlay", "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "extra.tar.gz"), nil, 0o644))
	src := `kiln = 1
name = "garden"
version = "2.0.0-rc.1"
description = "Garden sensors"

[board]
disk_size = "1GiB"
esp_size = "256MiB"
data_size = "512MiB"
boot_tries = 5

[kernel]
cmdline = "console=ttyS0"
modules = ["virtio_blk", "e1000"]

[system]
hostname = "garden"
timezone = "Europe/Berlin"
overlays = ["overlay", "extra.tar.gz"]
allow_devices = true

[[system.users]]
name = "pi"
password_hash = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"
ssh_keys = ["` + testKey + `"]
ssh_key_files = ["id.pub"]
uid = 1001

[[system.users]]
name = "root"

[system.wifi]
ssid = "Home"
psk = "correct horse battery"
country = "DE"

[[system.files]]
path = "/etc/motd"
source = "motd"
mode = "0644"

[[system.files]]
path = "/usr/local/bin/hello"
content = "#!/bin/sh\necho hi\n"
mode = 0o755

[data]
label = "GARDEN"

[update]
channel = "beta"
min_from = "1.0.0"
max_from = "1.9.9"
server = "http://192.168.1.10:8080"
health_check = "ping -c1 192.168.1.1"
`
	path := filepath.Join(dir, "kiln.toml")
	must(t, os.WriteFile(path, []byte(src), 0o644))
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.System.Users) != 2 || *r.System.Users[0].UID != 1001 || r.System.Users[1].UID != nil {
		t.Errorf("users: %+v", r.System.Users)
	}
	if r.System.WiFi == nil || r.System.WiFi.SSID != "Home" {
		t.Errorf("wifi: %v", r.System.WiFi)
	}
	if strings.Contains(r.System.WiFi.String(), "horse") {
		t.Errorf("WiFi.String leaks the PSK: %s", r.System.WiFi)
	}
	if r.System.Files[1].Mode != 0o755 || r.System.Files[0].Perm() != 0o644 {
		t.Errorf("modes: %+v", r.System.Files)
	}
	home, _ := os.UserHomeDir()
	if r.Resolve("~/.ssh/id.pub") != filepath.Join(home, ".ssh/id.pub") {
		t.Errorf("Resolve(~/...) = %q", r.Resolve("~/.ssh/id.pub"))
	}
	if r.Resolve("motd") != filepath.Join(dir, "motd") || r.Resolve("/abs") != "/abs" {
		t.Errorf("Resolve: %q", r.Resolve("motd"))
	}
	if l := r.Board.Layout(); l.ESPOffset != int64(MiB) || l.DataOffset != int64(257*MiB) || l.DataSize != int64(512*MiB) {
		t.Errorf("layout: %+v", l)
	}

	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(path, out)
	if err != nil {
		t.Fatalf("marshalled recipe does not parse: %v\n%s", err, out)
	}
	back.lines, r.lines = nil, nil
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v\n%s", back, r, out)
	}
}

func TestDefaultLayout(t *testing.T) {
	l := Default().Board.Layout()
	want := Layout{ESPOffset: 1 << 20, ESPSize: 192 << 20, DataOffset: 193 << 20, DataSize: (512 - 1 - 193) << 20, DiskSize: 512 << 20}
	if l != want {
		t.Errorf("layout = %+v, want %+v", l, want)
	}
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbVYqUTb3H4eR3wUpdIDE3TAkSDbvl2zS9MVxvXyhgH test@kiln"

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestIncompatibleFormat(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"kiln = 3\nname = \"x\"\n", "kiln.toml:1: recipe format 3 is not supported by this kiln (supports 1–1); install a newer kiln"},
		{"# comment\nkiln = 0\n", "kiln.toml:2: recipe format 0 is not supported by this kiln (supports 1–1); convert it to format 1"},
		// Fails fast even when the rest would not parse.
		{"kiln = 2\nthis is { not toml\n[board]\n", "recipe format 2 is not supported by this kiln (supports 1–1)"},
		{"name = \"x\"\n  kiln=7 # future\n", "recipe format 7 is not supported"},
	} {
		_, err := Parse("kiln.toml", []byte(tc.src))
		if !errors.Is(err, ErrIncompatible) {
			t.Errorf("%q: error %v does not wrap ErrIncompatible", tc.src, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not contain %q", tc.src, err, tc.want)
		}
	}
}

// TestBadRecipes checks each class of bad input and the message (file:line: field: message; hint)
// a user sees.
func TestBadRecipes(t *testing.T) {
	head := "kiln = 1\nname = \"garden\"\nversion = \"1.0.0\"\n" // lines 1–3
	for _, tc := range []struct {
		name string
		src  string
		want []string // each must appear in the error
	}{
		{"missing format", "name = \"x\"\n",
			[]string{"kiln.toml: kiln: the recipe format version is missing; add `kiln = 1` as the first line"}},
		{"syntax", head + "[board\n",
			[]string{"kiln.toml:4: ", "TOML syntax: "}},
		{"unknown top-level field", head + "hostnme = \"x\"\n",
			[]string{`kiln.toml:4: hostnme: unknown field "hostnme"`}},
		{"unknown field with suggestion", head + "[board]\ndisk_sise = \"1G\"\n",
			[]string{`kiln.toml:5: board.disk_sise: unknown field "disk_sise"; did you mean "disk_size"?`}},
		{"unknown section", head + "[sytem]\nhostname = \"x\"\n",
			[]string{`kiln.toml:4: sytem: unknown field "sytem"; did you mean "system"?`}},
		{"wrong type string", head + "[system]\nhostname = 42\n",
			[]string{"kiln.toml:5: system.hostname: expected a string, found an integer; put the value in double quotes"}},
		{"wrong type int", head + "[board]\nboot_tries = \"3\"\n",
			[]string{"kiln.toml:5: board.boot_tries: expected an integer, found a string; write a whole number without quotes"}},
		{"wrong type array", head + "[kernel]\nmodules = \"vfat\"\n",
			[]string{"kiln.toml:5: kernel.modules: expected an array of strings, found a string"}},
		{"wrong type in array", head + "[kernel]\nmodules = [\"vfat\",\n  3]\n",
			[]string{"kiln.toml:5: kernel.modules[1]: expected a string, found an integer"}},
		{"bad size", head + "[board]\ndisk_size = \"512XB\"\n",
			[]string{`kiln.toml:5: board.disk_size: bad size "512XB"; write a number with a unit, such as "512MiB", "2G" or "0"`}},
		{"bad version", "kiln = 1\nversion = \"1.0\"\n",
			[]string{`kiln.toml:2: version: bad version "1.0": want MAJOR.MINOR.PATCH such as 1.0.0`}},
		{"version with build metadata", "kiln = 1\nversion = \"1.0.0+3\"\n",
			[]string{`kiln.toml:2: version: version "1.0.0+3" has build metadata; drop the "+…" part`}},
		{"bad hostname", head + "[system]\nhostname = \"-bad_host\"\n",
			[]string{`kiln.toml:5: system.hostname: bad hostname "-bad_host"; use letters, digits and '-'`}},
		{"bad name", "kiln = 1\nname = \"My Image\"\n",
			[]string{`kiln.toml:2: name: bad name "My Image"; use 1–48 lowercase letters`}},
		{"missing file source", head + "[[system.files]]\npath = \"/etc/motd\"\nsource = \"nope.txt\"\n",
			[]string{"kiln.toml:6: system.files[0].source: input nope.txt does not exist; check the path (relative to "}},
		{"device as file source", head + "[[system.files]]\npath = \"/etc/motd\"\nsource = \"/dev/zero\"\n",
			[]string{"kiln.toml:6: system.files[0].source: input /dev/zero is a device, a pipe or a socket, not a regular file; name a regular file"}},
		{"missing overlay", head + "[system]\noverlays = [\"rootfs\"]\n",
			[]string{"kiln.toml:5: system.overlays[0]: input rootfs does not exist"}},
		{"missing ssh key file", head + "[[system.users]]\nname = \"pi\"\nssh_key_files = [\"id.pub\"]\n",
			[]string{"kiln.toml:6: system.users[0].ssh_key_files[0]: input id.pub does not exist"}},
		{"missing kernel deb", head + "[kernel]\npackage = \"debs/linux.deb\"\n",
			[]string{"kiln.toml:5: kernel.package: input debs/linux.deb does not exist"}},
		{"partitions do not fit", head + "[board]\ndisk_size = \"128MiB\"\nesp_size = \"100MiB\"\n",
			[]string{"kiln.toml:5: board.disk_size: partitions do not fit the disk: 1MiB GPT + ESP 100MiB + data (rest, at least 33MiB) + 1MiB backup GPT > disk 128MiB; make disk_size at least 135MiB"}},
		{"explicit partitions do not fit", head + "[board]\ndata_size = \"400MiB\"\n",
			[]string{"kiln.toml:5: board.data_size: partitions do not fit the disk"}},
		{"esp too small", head + "[board]\nesp_size = \"8MiB\"\n",
			[]string{"kiln.toml:5: board.esp_size: ESP of 8MiB is too small; make it at least 33MiB"}},
		{"duplicate file paths", head + "[[system.files]]\npath = \"/etc/motd\"\ncontent = \"a\"\n[[system.files]]\npath = \"/etc//motd\"\ncontent = \"b\"\n",
			[]string{"kiln.toml:8: system.files[1].path: duplicate path /etc/motd; remove one of system.files[0] and system.files[1]"}},
		{"bad mode string", head + "[[system.files]]\npath = \"/x\"\ncontent = \"a\"\nmode = \"rwxr-xr-x\"\n",
			[]string{`kiln.toml:7: system.files[0].mode: bad mode "rwxr-xr-x"; write the mode in octal`}},
		{"decimal mode", head + "[[system.files]]\npath = \"/x\"\ncontent = \"a\"\nmode = 755\n",
			[]string{`kiln.toml:7: system.files[0].mode: mode 755 is a decimal number; write "0755" (a string) or 0o755 (an octal integer)`}},
		{"relative file path", head + "[[system.files]]\npath = \"etc/motd\"\ncontent = \"a\"\n",
			[]string{`kiln.toml:5: system.files[0].path: path "etc/motd" is not absolute`}},
		{"source and content", head + "[[system.files]]\npath = \"/a\"\ncontent = \"a\"\nsource = \"b\"\n",
			[]string{"kiln.toml:4: system.files[0]: both source and content are given; keep only one of them"}},
		{"short psk", head + "[system.wifi]\nssid = \"Home\"\npsk = \"short\"\n",
			[]string{"kiln.toml:6: system.wifi.psk: PSK of 5 characters is not valid for WPA2; use a passphrase of 8–63 characters or 64 hex digits"}},
		{"bad psk hex", head + "[system.wifi]\nssid = \"Home\"\npsk = \"" + strings.Repeat("g", 64) + "\"\n",
			[]string{"system.wifi.psk: PSK of 64 characters is not valid"}},
		{"inline wifi", head + "[system]\nwifi = { ssid = \"\", psk = \"12345678\" }\n",
			[]string{"kiln.toml:5: system.wifi.ssid: SSID of 0 bytes"}},
		{"bad user name", head + "[[system.users]]\nname = \"Pi User\"\n",
			[]string{`kiln.toml:5: system.users[0].name: bad user name "Pi User"`}},
		{"duplicate user", head + "[[system.users]]\nname = \"pi\"\n[[system.users]]\nname = \"pi\"\n",
			[]string{`kiln.toml:7: system.users[1].name: user "pi" is defined twice`}},
		{"plain password", head + "[[system.users]]\nname = \"pi\"\npassword_hash = \"hunter22\"\n",
			[]string{"kiln.toml:6: system.users[0].password_hash: password_hash is not a crypt(3) hash (never put a plain password here); make a SHA-512 hash with `mkpasswd -m sha-512`"}},
		{"yescrypt hash", head + "[[system.users]]\nname = \"pi\"\npassword_hash = \"$y$j9T$abc$def\"\n",
			[]string{"password hash type $y$ is not supported in the image; make a SHA-512 hash"}},
		{"bad ssh key", head + "[[system.users]]\nname = \"pi\"\nssh_keys = [\"ssh-ed25519 notbase64!\"]\n",
			[]string{"kiln.toml:6: system.users[0].ssh_keys[0]: ssh-ed25519 key data is not valid"}},
		{"unknown timezone", head + "[system]\ntimezone = \"Mars/Olympus\"\n",
			[]string{`kiln.toml:5: system.timezone: unknown timezone "Mars/Olympus"`}},
		{"unknown firmware", head + "[board]\nfirmware = \"openfirmware\"\n",
			[]string{`kiln.toml:5: board.firmware: unknown firmware "openfirmware"`}},
		{"bios without grub", head + "[board]\nfirmware = \"bios\"\ngrub = \"\"\n",
			[]string{`board.grub: no package given`}},
		{"iso without grub", head + "[board]\ngrub = \"\"\n[outputs]\niso = true\n",
			[]string{`board.grub: no package given`}},
		{"bad arch", "kiln = 1\narch = \"arm64\"\n",
			[]string{`kiln.toml:2: arch: unsupported arch "arm64"`}},
		{"min_from above version", head + "[update]\nmin_from = \"2.0.0\"\n",
			[]string{"kiln.toml:5: update.min_from: min_from 2.0.0 is above this version 1.0.0"}},
		{"max_from not below", head + "[update]\nmax_from = \"1.0.0\"\n",
			[]string{"kiln.toml:5: update.max_from: max_from 1.0.0 is not below this version 1.0.0"}},
		{"bad server", head + "[update]\nserver = \"192.168.1.10\"\n",
			[]string{`kiln.toml:5: update.server: bad server URL "192.168.1.10"`}},
		{"bad label", head + "[data]\nlabel = \"my data partition\"\n",
			[]string{`kiln.toml:5: data.label: bad FAT label "my data partition"`}},
		{"bad console mode", head + "[system]\nconsole = \"root\"\n",
			[]string{`kiln.toml:5: system.console: unknown console mode "root"; use "auto", "shell" or "login"`}},
		{"bad module name", head + "[kernel]\nmodules = [\"virtio blk\"]\n",
			[]string{`kiln.toml:5: kernel.modules[0]: bad module name "virtio blk"`}},
		{"several problems at once", head + "[board]\ndisk_size = \"huge\"\nboot_tries = 0\n[system]\nhostname = \"\"\n",
			[]string{"kiln.toml: 3 problems:", "kiln.toml:5: board.disk_size: bad size", "kiln.toml:6: board.boot_tries", "kiln.toml:8: system.hostname"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			msg := strings.ReplaceAll(err.Error(), filepath.Dir(err.(*Error).File)+string(filepath.Separator), "")
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, w)
				}
			}
		})
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		err  bool
	}{
		{"0", 0, false}, {"512MiB", 512 * MiB, false}, {"1G", GiB, false}, {"1.5G", 1536 * MiB, false},
		{"4096", 4096, false}, {"2 GiB", 2 * GiB, false}, {"1MB", 1000000, false}, {"64k", 64 * KiB, false},
		{"", 0, true}, {"MiB", 0, true}, {"1.1.1G", 0, true}, {"12XB", 0, true}, {"-1G", 0, true}, {"0.3", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for s, want := range map[Size]string{0: "0", 512 * MiB: "512MiB", GiB: "1GiB", 1536 * MiB: "1536MiB", 1000: "1000"} {
		if s.String() != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), s.String(), want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	ordered := []string{"0.0.0", "0.9.10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
		"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareVersions(ordered[i], ordered[j]); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if CompareVersions("1.0.0+build1", "1.0.0+build2") != 0 {
		t.Error("build metadata must not affect order")
	}
	if CompareVersions("junk", "0.0.0") != -1 || CompareVersions("0.0.0", "junk") != 1 {
		t.Error("invalid versions must sort first")
	}
	for _, bad := range []string{"1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0.0", "1.a.0"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted a bad version", bad)
		}
	}
}

func TestScanLines(t *testing.T) {
	src := strings.Split(`kiln = 1
desc = """
name = "inside a string"
"""
[kernel]
modules = [
  "a", # [not a table]
  "b",
]
cmdline = "x"
[[system.users]]
name = "a"
[[system.users]]
"name" = "b"
system.x.y = 1
`, "\n")
	got := tomllines.Scan(src)
	for path, want := range map[string]int{
		"kiln": 1, "desc": 2, "kernel": 5, "kernel.modules": 6, "kernel.cmdline": 10,
		"system.users[0].name": 12, "system.users[1]": 13, "system.users[1].name": 14,
		"system.users[1].system.x.y": 15,
	} {
		if got[path] != want {
			t.Errorf("line of %s = %d, want %d (all: %v)", path, got[path], want, got)
		}
	}
	if _, ok := got["name"]; ok {
		t.Error("a key inside a multi-line string was taken for a field")
	}
	if tomllines.LineOf(got, "kernel.modules[1]") != 6 {
		t.Error("lineOf does not fall back to the parent")
	}
}

func TestConsoleShell(t *testing.T) {
	hash := "$6$salt$hash"
	for _, tc := range []struct {
		mode  string
		users []User
		shell bool
	}{
		{"auto", nil, true},
		{"", []User{{Name: "alice"}}, true},
		{"auto", []User{{Name: "alice", PasswordHash: hash}}, false},
		{"shell", []User{{Name: "alice", PasswordHash: hash}}, true},
		{"login", nil, false},
	} {
		s := System{Console: tc.mode, Users: tc.users}
		if got := s.ConsoleShell(); got != tc.shell {
			t.Errorf("console %q with %d users: shell=%v, want %v", tc.mode, len(tc.users), got, tc.shell)
		}
	}
}

// Pos names where a field is set, for errors found after validation (reading an input).
func TestPos(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "motd"), []byte("hi\n"), 0o644))
	src := "kiln = 1\nname = \"g\"\nversion = \"1.0.0\"\n[[system.files]]\npath = \"/etc/motd\"\nsource = \"motd\"\n"
	path := filepath.Join(dir, "kiln.toml")
	r, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"system.files[0].source": path + ":6: system.files[0].source",
		"system.files[0]":        path + ":4: system.files[0]",
		"kernel.package":         path + ": kernel.package", // a default: no line
	} {
		if got := r.Pos(field); got != want {
			t.Errorf("Pos(%s) = %q, want %q", field, got, want)
		}
	}
	if got := Default().Pos("name"); got != "name" {
		t.Errorf("built-in recipe: Pos(name) = %q", got)
	}
}
