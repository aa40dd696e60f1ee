package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/kilnproject/kiln/assembler/grub/grubenv"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/internal/semver"
)

// Legacy BIOS boot through GRUB. The unified kernel images in EFI/Linux, with systemd-boot's
// boot-counting names, stay the agent's record of the slots on every image. GRUB cannot rename
// files and cannot run a UKI, so on an image with GRUB's environment block (grub/grubenv) the
// agent also keeps GRUB's view in step:
//   - after a BIOS boot it folds the tries GRUB counted down in grubenv into the trial UKI's
//     name, as systemd-boot would have renamed it;
//   - after any change to EFI/Linux it unpacks each slot's kernel, initramfs and command line
//     from its UKI into kiln/<base>/ and names the blessed slot and the trial slot with its tries
//     left in grubenv, which it rewrites in place (GRUB's save_env writes through the file's
//     block list, so the file must not move).

// maxUKI bounds a UKI read into memory to unpack it.
const maxUKI = 512 << 20

func (a *Agent) grubEnv() string { return filepath.Join(a.cfg.ESP, grubenv.EnvPath) }
func (a *Agent) slotDir() string { return filepath.Join(a.cfg.ESP, grubenv.SlotDir) }

// bootedBIOS reports whether this boot came through legacy BIOS (no EFI variables).
func (a *Agent) bootedBIOS() bool {
	_, err := os.Stat(a.cfg.EFIVars)
	return errors.Is(err, os.ErrNotExist)
}

// syncGRUB keeps GRUB's slots in step with EFI/Linux; fold first takes over GRUB's try count.
// Images without grubenv are left alone.
func (a *Agent) syncGRUB(fold bool) error {
	st, err := os.Stat(a.grubEnv())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var data []byte
	if err == nil && st.Size() <= 64*grubenv.Size { // a damaged file system may claim anything
		data, err = os.ReadFile(a.grubEnv())
	}
	if err != nil {
		return fmt.Errorf("GRUB environment: %w", err)
	}
	env, perr := grubenv.Parse(data)
	if perr != nil {
		a.log.WithError(perr).Warn("GRUB environment unreadable; writing it anew")
		env = grubenv.Env{}
	}
	dir := a.linuxDir()
	es, err := entries(dir)
	if err != nil {
		return fmt.Errorf("GRUB slots: %w", err)
	}
	if fold && env[grubenv.VarTrial] != "" {
		if err := a.foldTries(dir, es, env); err != nil {
			return err
		}
		if es, err = entries(dir); err != nil {
			return fmt.Errorf("GRUB slots: %w", err)
		}
	}
	def, trial := slotsOf(es, a.base())
	want := grubenv.Env{grubenv.VarDefault: "", grubenv.VarTrial: "", grubenv.VarTries: "0"}
	keep := map[string]bool{}
	for _, e := range []Entry{def, trial} {
		if e.File == "" {
			continue
		}
		if err := a.unpackSlot(filepath.Join(dir, e.File), e.Base); err != nil {
			return err
		}
		keep[e.Base] = true
	}
	if def.File != "" {
		want[grubenv.VarDefault] = def.Base
	}
	if trial.File != "" {
		want[grubenv.VarTrial], want[grubenv.VarTries] = trial.Base, strconv.Itoa(min(trial.Left, grubenv.MaxTries))
	}
	// Remove the slots no entry names any more.
	if des, err := os.ReadDir(a.slotDir()); err == nil {
		for _, de := range des {
			if !keep[de.Name()] {
				os.RemoveAll(filepath.Join(a.slotDir(), de.Name()))
			}
		}
	}
	if env[grubenv.VarDefault] == want[grubenv.VarDefault] && env[grubenv.VarTrial] == want[grubenv.VarTrial] &&
		env[grubenv.VarTries] == want[grubenv.VarTries] && perr == nil {
		return nil
	}
	out, err := grubenv.Encode(want)
	if err != nil {
		return err
	}
	if err := writeInPlace(a.grubEnv(), out); err != nil {
		return fmt.Errorf("GRUB environment: %w", err)
	}
	a.log.WithFields(map[string]any{"default": want[grubenv.VarDefault], "trial": want[grubenv.VarTrial],
		"tries": want[grubenv.VarTries]}).Info("GRUB slots updated")
	return nil
}

// foldTries renames the trial UKI to carry the tries GRUB has left, as systemd-boot's counter.
func (a *Agent) foldTries(dir string, es []Entry, env grubenv.Env) error {
	left, err := strconv.Atoi(env[grubenv.VarTries])
	if err != nil || left < 0 {
		left = 0
	}
	for _, e := range es {
		if e.Base != env[grubenv.VarTrial] || !e.Counted || left >= e.Left {
			continue
		}
		name := fmt.Sprintf("%s+%d-%d.efi", e.Base, left, e.Done+e.Left-left)
		if err := os.Rename(filepath.Join(dir, e.File), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("count GRUB's boot of %s: %w", e.File, err)
		}
		a.log.WithFields(map[string]any{"from": e.File, "to": name}).Info("boot counted by GRUB")
		return atomicfile.SyncDir(dir)
	}
	return nil
}

// slotsOf picks GRUB's slots: the default is the running version's blessed entry, else the newest
// blessed one; the trial is the newest entry with tries left.
func slotsOf(es []Entry, running string) (def, trial Entry) {
	sort.Slice(es, func(i, j int) bool { return versionLess(es[i].Base, es[j].Base) })
	for _, e := range es {
		switch {
		case !e.Counted && (def.File == "" || def.Base != running):
			def = e
		case e.Counted && e.Left > 0:
			trial = e
		}
	}
	return def, trial
}

// versionLess orders "<name>-<version>" bases by version where both parse, else by name.
func versionLess(a, b string) bool {
	va, erra := semver.Parse(a[lastDash(a)+1:])
	vb, errb := semver.Parse(b[lastDash(b)+1:])
	if erra == nil && errb == nil {
		return va.Compare(vb) < 0
	}
	return a < b
}

func lastDash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			return i
		}
	}
	return -1
}

// unpackSlot writes kiln/<base>/{linux,initrd,boot.cfg} from the UKI at path unless present.
func (a *Agent) unpackSlot(path, base string) error {
	dir := filepath.Join(a.slotDir(), base)
	if _, err := os.Stat(filepath.Join(dir, "boot.cfg")); err == nil {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("GRUB slot %s: %w", base, err)
	}
	if st.Size() > maxUKI {
		return fmt.Errorf("GRUB slot %s: %s is %d bytes, more than a kernel image can be", base, path, st.Size())
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("GRUB slot %s: %w", base, err)
	}
	secs, err := uki.Sections(img)
	if err != nil {
		return fmt.Errorf("GRUB slot %s: %s: %w", base, path, err)
	}
	parts := map[string][]byte{}
	for _, s := range secs {
		parts[s.Name] = s.Data
	}
	if len(parts[".linux"]) == 0 {
		return fmt.Errorf("GRUB slot %s: %s has no kernel", base, path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("GRUB slot %s: %w", base, err)
	}
	cmdline := string(bytes.TrimRight(parts[".cmdline"], "\x00"))
	// boot.cfg last: GRUB boots a slot only through it, so a slot without it is incomplete.
	for _, f := range []struct {
		name string
		data []byte
	}{{"linux", parts[".linux"]}, {"initrd", parts[".initrd"]}, {"boot.cfg", grubenv.SlotScript(base, cmdline)}} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("GRUB slot %s: %w", base, err)
		}
	}
	a.log.WithField("slot", base).Info("GRUB slot unpacked")
	return atomicfile.SyncDir(dir)
}

// writeInPlace overwrites the file's bytes without truncating or replacing it, so its clusters
// stay where GRUB's block list points.
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
