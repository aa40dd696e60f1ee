package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const packagesRecipe = `kiln = 1
name = "garden"
version = "1.0.0"
[system]
packages = ["dropbear", "python3 (>= 3.11)", "mawk | gawk"]
[[system.services]]
name = "garden"
command = "/usr/bin/python3 /opt/garden.py"
user = "pi"
restart = "on-failure"
after_network = true
[[system.services]]
name = "ticker"
command = "while true; do date; sleep 60; done"
[[system.users]]
name = "pi"
[archive]
mirrors = ["http://mirror.example.invalid/debian"]
suites = ["bookworm", "bookworm-updates"]
components = ["main", "contrib"]
keyring = "archive.asc"
`

func TestPackagesServicesArchive(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "archive.asc"), []byte("key"), 0o644))
	file := filepath.Join(dir, "kiln.toml")
	r, err := Parse(file, []byte(packagesRecipe))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"dropbear", "python3 (>= 3.11)", "mawk | gawk"}; !reflect.DeepEqual(r.PackageRequests(), want) {
		t.Errorf("packages %q, want %q", r.PackageRequests(), want)
	}
	want := []Service{
		{Name: "garden", Command: "/usr/bin/python3 /opt/garden.py", User: "pi", Restart: RestartOnFailure, AfterNetwork: true},
		{Name: "ticker", Command: "while true; do date; sleep 60; done"},
	}
	if !reflect.DeepEqual(r.System.Services, want) {
		t.Errorf("services %+v, want %+v", r.System.Services, want)
	}
	a := r.Archive
	if a == nil || a.Mirrors[0] != "http://mirror.example.invalid/debian" || len(a.Suites) != 2 || a.Components[1] != "contrib" ||
		r.Resolve(a.Keyring) != filepath.Join(dir, "archive.asc") {
		t.Errorf("archive %+v", a)
	}
	if r.DebianArch() != "amd64" {
		t.Errorf("Debian arch %q, want amd64", r.DebianArch())
	}
	// The default recipe installs no packages and reads the host's apt sources.
	if d := Default(); len(d.System.Packages) != 0 || d.Archive != nil {
		t.Errorf("default recipe has packages %q, archive %+v", d.System.Packages, d.Archive)
	}
	// Round trip.
	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(file, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back.lines, r.lines = nil, nil
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the recipe:\n%s", out)
	}
}

func TestBadPackagesServicesArchive(t *testing.T) {
	head := "kiln = 1\nname = \"garden\"\nversion = \"1.0.0\"\n" // lines 1–3
	for _, tc := range []struct {
		name, src, want string
	}{
		{"bad package", head + "[system]\npackages = [\"Python3\"]\n",
			`kiln.toml:5: system.packages[0]: relation "Python3": bad package name "Python3"; write a package name with an optional version`},
		{"bad version", head + "[system]\npackages = [\"python3 (>= )\"]\n", "kiln.toml:5: system.packages[0]: relation"},
		{"two packages in one", head + "[system]\npackages = [\"a, b\"]\n", `kiln.toml:5: system.packages[0]: "a, b" is not one package`},
		{"duplicate package", head + "[system]\npackages = [\"vim\",\n  \"vim (>= 9)\"]\n",
			"kiln.toml:5: system.packages[1]: package vim is listed twice"},
		{"service without command", head + "[[system.services]]\nname = \"x\"\n",
			"kiln.toml:4: system.services[0].command: no command given"},
		{"bad service name", head + "[[system.services]]\nname = \"My Service\"\ncommand = \"true\"\n",
			`kiln.toml:5: system.services[0].name: bad service name "My Service"`},
		{"duplicate service", head + "[[system.services]]\nname = \"a\"\ncommand = \"true\"\n[[system.services]]\nname = \"a\"\ncommand = \"true\"\n",
			`kiln.toml:8: system.services[1].name: service "a" is defined twice`},
		{"bad restart", head + "[[system.services]]\nname = \"a\"\ncommand = \"true\"\nrestart = \"sometimes\"\n",
			`kiln.toml:7: system.services[0].restart: unknown restart policy "sometimes"; use "always", "on-failure" or "no"`},
		{"bad after_network", head + "[[system.services]]\nname = \"a\"\ncommand = \"true\"\nafter_network = \"yes\"\n",
			"kiln.toml:7: system.services[0].after_network: expected a boolean, found a string"},
		{"bad service user", head + "[[system.services]]\nname = \"a\"\ncommand = \"true\"\nuser = \"Bob\"\n",
			`kiln.toml:7: system.services[0].user: bad user name "Bob"`},
		{"undefined service user", head + "[[system.services]]\nname = \"a\"\ncommand = \"true\"\nuser = \"mosquitto\"\n",
			`kiln.toml:7: system.services[0].user: user "mosquitto" is not defined; add the user as a [[system.users]] table`},
		{"bad mirror", head + "[archive]\nmirrors = [\"ftp://mirror/debian\"]\nsuites = [\"bookworm\"]\n",
			`kiln.toml:5: archive.mirrors[0]: bad mirror URL "ftp://mirror/debian"`},
		{"mirror without suites", head + "[archive]\nmirrors = [\"http://mirror.example.invalid/debian\"]\n",
			"kiln.toml:5: archive.mirrors: mirrors given without suites"},
		{"bad suite", head + "[archive]\nsuites = [\"../etc\"]\n", `kiln.toml:5: archive.suites[0]: bad suite "../etc"`},
		{"missing keyring", head + "[archive]\nkeyring = \"keys.gpg\"\n", "kiln.toml:5: archive.keyring: input keys.gpg does not exist"},
		{"bad arch", head + "[archive]\narch = \"AMD 64\"\n", `kiln.toml:5: archive.arch: bad architecture "AMD 64"`},
		{"unknown archive field", head + "[archive]\nmirror = \"x\"\n", `kiln.toml:5: archive.mirror: unknown field "mirror"; did you mean "mirrors"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(tc.src))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			msg := strings.ReplaceAll(err.Error(), filepath.Dir(err.(*Error).File)+string(filepath.Separator), "")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, tc.want)
			}
		})
	}
}
