package app

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/app/pwhash"
	"github.com/kilnproject/kiln/assembler/recipe"
)

// unsetFields lists the recipe fields (dotted paths) that v leaves at their zero value. A field of a
// slice of structs counts as set when any element sets it.
func unsetFields(v reflect.Value, path string) []string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return []string{path}
		}
		return unsetFields(v.Elem(), path)
	case reflect.Struct:
		var out []string
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			tag := strings.Split(f.Tag.Get("toml"), ",")[0]
			if !f.IsExported() || tag == "-" {
				continue
			}
			out = append(out, unsetFields(v.Field(i), strings.TrimPrefix(path+"."+tag, "."))...)
		}
		return out
	case reflect.Slice:
		if v.Len() == 0 {
			return []string{path}
		}
		if v.Type().Elem().Kind() != reflect.Struct {
			return nil
		}
		count := map[string]int{}
		for i := 0; i < v.Len(); i++ {
			for _, u := range unsetFields(v.Index(i), path) {
				count[u]++
			}
		}
		var out []string
		for u, n := range count {
			if n == v.Len() {
				out = append(out, u)
			}
		}
		return out
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

// A recipe setting every field survives the Build form: opened into the form and saved, it reads
// back the same, field by field (file modes included).
func TestBuildFormRoundTripEveryField(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	a.cores.Build = &realBuild{}
	dir := t.TempDir()
	for name, data := range map[string]string{"motd": "hello\n", "id.pub": testKey + "\n", "run.sh": "#!/bin/sh\n",
		"data-extra/README": "data\n", "rootfs/etc/issue": "Kiln\n", "archive.gpg": "key\n"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := pwhash.Hash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	src := `kiln = 1
name = "garden"
version = "2.1.0"
arch = "x86_64"
description = "Garden sensors"

[board]
name = "pc"
firmware = "uefi"
disk_size = "1GiB"
esp_size = "256MiB"
data_size = "512MiB"
root_size = "256MiB"
bootloader = "systemd-boot-efi"
boot_tries = 5

[kernel]
package = "linux-image-amd64"
cmdline = "console=ttyS0 quiet"
modules = ["virtio_blk", "e1000"]

[system]
hostname = "garden"
busybox = "busybox-static"
timezone = "Europe/Berlin"
console = "login"
overlays = ["rootfs"]
allow_devices = true
packages = ["hello", "python3 (>= 3.11)"]

[[system.services]]
name = "sensors"
command = "/usr/local/bin/run"
user = "pi"
restart = "on-failure"
after_network = true

[[system.users]]
name = "pi"
password_hash = "` + hash + `"
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
path = "/usr/local/bin/run"
source = "run.sh"
mode = "0755"

[[system.files]]
path = "/etc/greeting"
content = "hi\n"
mode = "0600"

[[system.files]]
path = "/etc/motd"
source = "motd"

[data]
label = "GARDEN"
overlays = ["data-extra"]

[update]
channel = "beta"
min_from = "1.0.0"
max_from = "2.0.0"
server = "http://kiln.local:8080"
health_check = "/usr/bin/check"

[outputs]
iso = true

[archive]
mirrors = ["http://127.0.0.1:9/debian"]
suites = ["bookworm"]
components = ["main", "contrib"]
keyring = "archive.gpg"
arch = "amd64"
`
	orig := filepath.Join(dir, "garden.toml")
	if err := os.WriteFile(orig, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := recipe.Load(orig)
	if err != nil {
		t.Fatal(err)
	}
	if unset := unsetFields(reflect.ValueOf(want).Elem(), ""); len(unset) != 0 {
		t.Fatalf("the test recipe leaves %v unset; set every field", unset)
	}

	s := a.build
	s.open(orig)
	if len(s.problems) != 0 {
		t.Fatalf("the form reports problems: %v", s.problems)
	}
	saved := filepath.Join(dir, "saved.toml")
	s.save(saved)
	got, err := recipe.Load(saved)
	if err != nil {
		t.Fatalf("saved recipe does not load: %v", err)
	}
	if !reflect.DeepEqual(got.System.Files, want.System.Files) {
		t.Errorf("files after the form:\n%+v\nwant\n%+v", got.System.Files, want.System.Files)
	}
	wantData, _ := want.Marshal()
	gotData, _ := got.Marshal()
	if !bytes.Equal(gotData, wantData) {
		t.Errorf("the form changed the recipe:\n%s\nwant\n%s", gotData, wantData)
	}
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbVYqUTb3H4eR3wUpdIDE3TAkSDbvl2zS9MVxvXyhgH test@kiln"

// Choosing a board in the form offers its firmware, takes its disk size, and the recipe then
// builds for its arch with its kernel; the other settings stay.
func TestBuildFormChoosesBoard(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	a.cores.Build = &realBuild{}
	s := a.build
	s.setRecipe(toForm(recipe.Default()))
	s.hostname.SetText("garden")
	s.board.SetSelected("arm64-uefi")
	if got := strings.Join(s.firmware.Options, ","); got != "uefi" || s.firmware.Selected != "uefi" {
		t.Errorf("firmware options %q, selected %q", got, s.firmware.Selected)
	}
	r := fromForm(s.collect())
	if r.Arch != "aarch64" || r.Kernel.Package != "linux-image-arm64" || r.Board.Name != "arm64-uefi" || r.System.Hostname != "garden" {
		t.Errorf("recipe after choosing arm64-uefi: arch %s kernel %s board %q hostname %s", r.Arch, r.Kernel.Package, r.Board.Name, r.System.Hostname)
	}
	if len(s.problems) != 0 {
		t.Errorf("problems: %v", s.problems)
	}
	s.board.SetSelected("rpi")
	if s.firmware.Selected != "rpi" {
		t.Errorf("rpi firmware %q", s.firmware.Selected)
	}
	s.board.SetSelected("pc")
	if got := strings.Join(s.firmware.Options, ","); got != "uefi,bios,hybrid" {
		t.Errorf("pc firmware options %q", got)
	}
	if r := fromForm(s.collect()); r.Arch != "x86_64" || r.Kernel.Package != "linux-image-amd64" {
		t.Errorf("back on pc: arch %s kernel %s", r.Arch, r.Kernel.Package)
	}
}
