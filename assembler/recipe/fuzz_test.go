package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assets"
)

// FuzzParse decodes and validates arbitrary recipe text. It returns a recipe or an error, never
// panics; every problem names the recipe file; an accepted recipe validates, encodes, and reads
// back to an equal recipe.
func FuzzParse(f *testing.F) {
	f.Add(assets.DefaultRecipe)
	f.Add([]byte("kiln = 1\nname = \"garden\"\nversion = \"1.0.0\"\n[system]\nhostname = \"garden\"\n"))
	f.Add([]byte("kiln = 1\nname = \"g\"\nversion = \"1.0.0\"\n[[system.files]]\npath = \"/etc/motd\"\ncontent = \"hi\"\nmode = \"0755\"\n" +
		"[[system.users]]\nname = \"pi\"\nssh_keys = [\"" + testKey + "\"]\nuid = 1001\n[system.wifi]\nssid = \"Home\"\npsk = \"correct horse\"\n"))
	f.Add([]byte("kiln = 1\n[board]\ndisk_size = \"1GiB\"\nesp_size = \"256MiB\"\ndata_size = \"512MiB\"\nboot_tries = 5\n" +
		"[update]\nchannel = \"beta\"\nmin_from = \"0.9.0\"\nserver = \"http://kiln.local:8080\"\n"))
	f.Add([]byte(packagesRecipe))
	f.Add([]byte("kiln = 1\n[system]\npackages = [\"python3 (>= 3.11)\", \"mawk | gawk\", \"libc6:i386\"]\n" +
		"[[system.services]]\nname = \"s\"\ncommand = \"true\"\nrestart = \"no\"\nafter_network = true\n[archive]\narch = \"arm64\"\nsuites = [\"bookworm\"]\n"))
	f.Add([]byte("kiln = 1\narch = \"aarch64\"\n[board]\nname = \"arm64-uefi\"\nfirmware = \"rpi\"\n[kernel]\npackage = \"linux-image-amd64\"\n"))
	f.Add([]byte("kiln = 1\n[board]\nname = \"boards/none.toml\"\n"))
	f.Add([]byte("kiln = 2\n"))
	f.Add([]byte("kiln = 1\n[board\n"))
	f.Add([]byte("kiln = 1\nversion = \"01.0.0\"\n[kernel]\nmodules = [\"a\",\n 3]\n"))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "motd"), []byte("hi\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "archive.asc"), []byte("key"), 0o644); err != nil {
		f.Fatal(err)
	}
	file := filepath.Join(dir, "kiln.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(file, data)
		if err != nil {
			var re *Error
			if errors.As(err, &re) {
				for _, p := range re.Problems {
					if p.File != file || p.Line < 0 || p.Line > strings.Count(string(data), "\n")+1 {
						t.Fatalf("problem %+v does not point into the recipe", p)
					}
				}
			} else if !errors.Is(err, ErrIncompatible) {
				t.Fatalf("error neither ErrInvalid nor ErrIncompatible: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed recipe does not validate: %v", err)
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(file, out)
		if err != nil {
			t.Fatalf("encoded recipe does not parse: %v\n%s", err, out)
		}
		back.lines, r.lines = nil, nil
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the recipe:\n%+v\n%+v\n%s", r, back, out)
		}
	})
}
