package grubenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// grub-editenv, GRUB's own tool, reads what Encode writes and writes what Parse reads.
func TestAgainstGrubEditenv(t *testing.T) {
	editenv := testenv.Tool(t, "grub-editenv")
	p := filepath.Join(t.TempDir(), "grubenv")
	b, err := Encode(Env{"kiln_default": "kiln-tiny-1.0.0", "kiln_trial": "kiln-tiny-1.1.0", "kiln_tries": "3", "odd": "a\\b"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, b, 0o644)
	out, err := exec.Command(editenv, p, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv list: %v\n%s", err, out)
	}
	for _, want := range []string{"kiln_default=kiln-tiny-1.0.0", "kiln_trial=kiln-tiny-1.1.0", "kiln_tries=3", "odd=a\\b"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("grub-editenv list lacks %q:\n%s", want, out)
		}
	}
	if out, err := exec.Command(editenv, p, "set", "kiln_tries=2", "new=x y").CombinedOutput(); err != nil {
		t.Fatalf("grub-editenv set: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(p)
	env, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if env["kiln_tries"] != "2" || env["new"] != "x y" || env["kiln_trial"] != "kiln-tiny-1.1.0" || env["odd"] != "a\\b" {
		t.Fatalf("parsed %v", env)
	}
}

func TestErrors(t *testing.T) {
	if _, err := Parse(make([]byte, 1024)); err == nil {
		t.Error("zeros parsed")
	}
	if _, err := Parse([]byte(header)); err == nil {
		t.Error("short block parsed")
	}
	if _, err := Encode(Env{"big": strings.Repeat("x", 1024)}); err == nil {
		t.Error("oversized block encoded")
	}
	if _, err := Encode(Env{"a=b": "c"}); err == nil {
		t.Error("bad name encoded")
	}
}

func FuzzParse(f *testing.F) {
	b, _ := Encode(Env{"kiln_default": "kiln-tiny-1.0.0", "kiln_tries": "1"})
	f.Add(b)
	f.Add(append([]byte(header), bytes.Repeat([]byte("\\"), Size-len(header))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Parse(b)
		if err != nil {
			return
		}
		if enc, err := Encode(env); err == nil {
			again, err := Parse(enc)
			if err != nil || len(again) != len(env) {
				t.Fatalf("round trip: %v %v %v", env, again, err)
			}
			for k, v := range env {
				if again[k] != v {
					t.Fatalf("round trip of %q: %q → %q", k, v, again[k])
				}
			}
		}
	})
}
