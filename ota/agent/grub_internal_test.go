package agent

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/grub/grubenv"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/testenv"
)

func TestGRUBSlots(t *testing.T) {
	parse := func(files ...string) []Entry {
		var es []Entry
		for _, f := range files {
			e, _ := ParseEntry(f)
			es = append(es, e)
		}
		return es
	}
	for _, tc := range []struct {
		files          []string
		running        string
		def, trial     string
		trialTriesLeft int
	}{
		{[]string{"x-1.0.0.efi"}, "x-1.0.0", "x-1.0.0", "", 0},
		{[]string{"x-1.0.0.efi", "x-1.1.0+3.efi"}, "x-1.0.0", "x-1.0.0", "x-1.1.0", 3},
		{[]string{"x-1.1.0+1-2.efi", "x-1.0.0.efi"}, "x-1.1.0", "x-1.0.0", "x-1.1.0", 1},
		{[]string{"x-1.0.0.efi", "x-1.1.0+0-3.efi"}, "x-1.0.0", "x-1.0.0", "", 0},
		// after a bless both are blessed: the running one is the default, even if older
		{[]string{"x-1.10.0.efi", "x-1.9.0.efi"}, "x-1.9.0", "x-1.9.0", "", 0},
		{[]string{"x-1.10.0.efi", "x-1.9.0.efi"}, "x-2.0.0", "x-1.10.0", "", 0},
	} {
		def, trial := slotsOf(parse(tc.files...), tc.running)
		if def.Base != tc.def || trial.Base != tc.trial || trial.Left != tc.trialTriesLeft {
			t.Errorf("%v running %s: default %q trial %q (%d left), want %q %q (%d)", tc.files, tc.running,
				def.Base, trial.Base, trial.Left, tc.def, tc.trial, tc.trialTriesLeft)
		}
	}
}

// TestGRUBSync runs the agent's GRUB bookkeeping on an ESP directory with real UKIs (systemd's
// stub): slots unpacked from the UKIs, grubenv rewritten in place, GRUB's count folded into the
// trial's name until it is used up and the slot dropped.
func TestGRUBSync(t *testing.T) {
	stub, err := os.ReadFile("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		testenv.Missing(t, "systemd-boot-efi is not installed: %v", err)
	}
	esp := t.TempDir()
	linux := filepath.Join(esp, "EFI", "Linux")
	os.MkdirAll(linux, 0o755)
	os.MkdirAll(filepath.Join(esp, "grub"), 0o755)
	os.MkdirAll(filepath.Join(esp, "kiln", "x-0.9.0"), 0o755)
	mk := func(name, kernel, initrd, cmdline string) {
		img, err := uki.Build(uki.Input{Stub: stub, Kernel: []byte(kernel), Initrd: []byte(initrd), Cmdline: cmdline})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(linux, name), img, 0o644)
	}
	mk("x-1.0.0.efi", "kernel one", "initrd one", "console=ttyS0 it's")
	mk("x-1.1.0+3.efi", "kernel two", "initrd two", "quiet")
	env, _ := grubenv.Encode(grubenv.Env{grubenv.VarDefault: "x-1.0.0"})
	envPath := filepath.Join(esp, "grub", "grubenv")
	os.WriteFile(envPath, env, 0o644)
	before, _ := os.Stat(envPath)

	log := logrus.New()
	log.SetOutput(io.Discard)
	a := &Agent{cfg: Config{ESP: esp, EFIVars: filepath.Join(esp, "no-efivars")}, log: log, rel: Release{Name: "x", Version: "1.0.0"}}
	read := func(p ...string) string {
		b, _ := os.ReadFile(filepath.Join(append([]string{esp}, p...)...))
		return string(b)
	}
	state := func() grubenv.Env {
		e, err := grubenv.Parse([]byte(read("grub", "grubenv")))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if err := a.syncGRUB(a.bootedBIOS()); err != nil {
		t.Fatal(err)
	}
	if read("kiln", "x-1.0.0", "linux") != "kernel one" || read("kiln", "x-1.1.0", "initrd") != "initrd two" ||
		read("kiln", "x-1.0.0", "boot.cfg") != "linux /kiln/x-1.0.0/linux 'console=ttyS0' 'it'\\''s'\ninitrd /kiln/x-1.0.0/initrd\n" {
		t.Fatalf("slots: %q %q %q", read("kiln", "x-1.0.0", "linux"), read("kiln", "x-1.1.0", "initrd"), read("kiln", "x-1.0.0", "boot.cfg"))
	}
	if _, err := os.Stat(filepath.Join(esp, "kiln", "x-0.9.0")); err == nil {
		t.Error("a stale slot stayed")
	}
	if e := state(); e[grubenv.VarDefault] != "x-1.0.0" || e[grubenv.VarTrial] != "x-1.1.0" || e[grubenv.VarTries] != "3" {
		t.Fatalf("grubenv %v", e)
	}
	after, _ := os.Stat(envPath)
	if !os.SameFile(before, after) {
		t.Error("grubenv was replaced, not rewritten in place")
	}

	// GRUB booted the trial twice: the name takes the count over.
	env, _ = grubenv.Encode(grubenv.Env{grubenv.VarDefault: "x-1.0.0", grubenv.VarTrial: "x-1.1.0", grubenv.VarTries: "1"})
	writeInPlace(envPath, env)
	if err := a.syncGRUB(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(linux, "x-1.1.0+1-2.efi")); err != nil {
		t.Fatalf("trial not renamed: %v", err)
	}
	// Used up: the trial slot is dropped, the default boots.
	env, _ = grubenv.Encode(grubenv.Env{grubenv.VarDefault: "x-1.0.0", grubenv.VarTrial: "x-1.1.0", grubenv.VarTries: "0"})
	writeInPlace(envPath, env)
	if err := a.syncGRUB(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(linux, "x-1.1.0+0-3.efi")); err != nil {
		t.Fatalf("trial not marked used up: %v", err)
	}
	if e := state(); e[grubenv.VarTrial] != "" || e[grubenv.VarDefault] != "x-1.0.0" {
		t.Fatalf("grubenv %v", e)
	}
	if _, err := os.Stat(filepath.Join(esp, "kiln", "x-1.1.0")); err == nil {
		t.Error("the used-up slot stayed")
	}
}
