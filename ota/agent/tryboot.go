package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/atomicfile"
	"github.com/kilnproject/kiln/ota"
)

// Raspberry Pi A/B through the firmware's tryboot. The image's FAT partitions are mounted under
// Config.PiBoot by number: 1 holds autoboot.txt, two others hold a boot slot each (firmware,
// config.txt, cmdline.txt, kernel, initramfs). autoboot.txt names the committed slot in [all]
// and the other one in [tryboot]. An update is unpacked from its UKI into the spare slot, then
// the agent reboots with the tryboot flag: the firmware boots the spare slot once and clears
// the flag, so a trial that hangs, crashes or fails its health check comes back to the
// committed slot at the next reset. A trial that passes rewrites autoboot.txt (temporary file
// and rename) to commit its slot. Each slot's cmdline.txt carries kiln.slot=N, so the running
// kernel knows its partition (the firmware's /chosen/bootloader/partition otherwise).

// piDir is the mount point of FAT partition n.
func (a *Agent) piDir(n int) string { return filepath.Join(a.cfg.PiBoot, strconv.Itoa(n)) }

// tryboot reports whether this is a Raspberry Pi image with tryboot A/B.
func (a *Agent) tryboot() bool {
	_, err := os.Stat(filepath.Join(a.piDir(1), rpiboot.AutobootFile))
	return err == nil
}

func (a *Agent) readAutoboot() (rpiboot.Autoboot, error) {
	p := filepath.Join(a.piDir(1), rpiboot.AutobootFile)
	f, err := os.Open(p)
	if err != nil {
		return rpiboot.Autoboot{}, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	data := make([]byte, rpiboot.MaxAutoboot+1)
	n, _ := f.Read(data)
	ab, err := rpiboot.ParseAutoboot(data[:n])
	if err != nil {
		return ab, fmt.Errorf("read %s: %w", p, err)
	}
	return ab, nil
}

func (a *Agent) writeAutoboot(ab rpiboot.Autoboot) error {
	p := filepath.Join(a.piDir(1), rpiboot.AutobootFile)
	if err := atomicfile.Write(p, ab.Encode(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// bootedSlot is the partition the firmware booted: kiln.slot= on the kernel command line, else
// the firmware's device-tree property; 0 when neither says.
func (a *Agent) bootedSlot() int {
	if b, err := os.ReadFile(a.cfg.Cmdline); err == nil && len(b) < 1<<16 {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "kiln.slot="); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 128 {
					return n
				}
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.DeviceTree, "chosen", "bootloader", "partition"))
	if err == nil && len(b) == 4 {
		if n := binary.BigEndian.Uint32(b); n > 0 && n < 128 {
			return int(n)
		}
	}
	return 0
}

// assessTryboot is Assess on a tryboot image.
func (a *Agent) assessTryboot(ctx context.Context) error {
	booted := a.bootedSlot()
	if booted == 0 {
		return errors.New("tryboot: cannot tell the booted partition (no kiln.slot= on the kernel command line, no /chosen/bootloader/partition)")
	}
	ab, err := a.readAutoboot()
	if err != nil {
		// The firmware booted this slot, so it is the best known; keep the other as the spare.
		other := 2
		if booted == 2 {
			other = 3
		}
		a.log.WithError(err).Warn("tryboot: writing autoboot.txt anew")
		ab = rpiboot.Autoboot{Boot: booted, Try: other}
		if err := a.writeAutoboot(ab); err != nil {
			return err
		}
	}
	pend := a.loadPending()
	if booted != ab.Boot {
		if pend != nil && pend.Version == a.rel.Version && !pend.Tried {
			pend.Tried = true
			if err := a.savePending(*pend); err != nil {
				a.log.WithError(err).Warn("tryboot: remember the trial")
			}
		}
		a.report(ctx, ota.StateBooted, a.rel.Version, fmt.Sprintf("trial boot of partition %d", booted))
		if msg, ok := a.health(ctx); !ok {
			a.log.WithFields(logrus.Fields{"version": a.rel.Version, "partition": booted}).Warn("unhealthy: " + msg + "; rebooting into partition " + strconv.Itoa(ab.Boot))
			a.report(ctx, ota.StateUnhealthy, a.rel.Version, msg)
			return a.reboot(ctx)
		}
		if err := a.writeAutoboot(rpiboot.Autoboot{Boot: booted, Try: ab.Boot}); err != nil {
			return fmt.Errorf("commit partition %d: %w", booted, err)
		}
		a.clearPending()
		a.log.WithFields(logrus.Fields{"version": a.rel.Version, "partition": booted}).Info("healthy")
		a.report(ctx, ota.StateHealthy, a.rel.Version, fmt.Sprintf("new version confirmed: partition %d", booted))
		return nil
	}
	if pend != nil && pend.Version != a.rel.Version {
		if pend.Rebooted {
			if !pend.Tried {
				a.log.WithField("version", pend.Version).Warn("the trial boot never reached kiln-agent: the new kernel failed early, " +
					"or the kernel did not pass the tryboot flag to the firmware (reboot '0 tryboot' needs the Raspberry Pi firmware driver's support)")
			}
			a.rolledBack(ctx, pend, nil)
		} else {
			// Power went before the trial reboot: the update was never tried.
			a.log.WithField("version", pend.Version).Info("installed update was not tried; installing it again")
			a.clearPending()
			pend = nil
		}
	} else if pend != nil {
		a.clearPending()
	}
	a.reportHealth(ctx, pend)
	return nil
}

// installSlot unpacks the downloaded UKI at path into the spare boot slot and names that slot
// in autoboot.txt's [tryboot] section; the next reboot carries the tryboot flag.
func (a *Agent) installSlot(path string, p pending) error {
	booted := a.bootedSlot()
	ab, err := a.readAutoboot()
	if err != nil {
		return err
	}
	if booted != ab.Boot {
		return fmt.Errorf("tryboot: running from partition %d, not the committed %d; not installing during a trial", booted, ab.Boot)
	}
	spare := ab.Try
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() > maxUKI {
		return fmt.Errorf("%s is %d bytes, more than a kernel image can be", path, st.Size())
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	secs, err := uki.Sections(img)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", p.Base, err)
	}
	parts := map[string][]byte{}
	for _, s := range secs {
		parts[s.Name] = s.Data
	}
	if len(parts[".linux"]) == 0 {
		return fmt.Errorf("unpack %s: no kernel in the update", p.Base)
	}
	cmdline := rpiboot.CmdlineTxt(string(bytes.TrimRight(parts[".cmdline"], "\x00")), spare)
	from, to := a.piDir(booted), a.piDir(spare)
	// The firmware files, device trees and config.txt come from the running slot.
	if err := copySlot(from, to); err != nil {
		return fmt.Errorf("prepare partition %d: %w", spare, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{rpiboot.KernelFile, parts[".linux"]}, {rpiboot.InitrdFile, parts[".initrd"]}, {"cmdline.txt", cmdline}} {
		if err := atomicfile.Write(filepath.Join(to, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("prepare partition %d: %w", spare, err)
		}
	}
	if err := atomicfile.SyncDir(to); err != nil {
		return fmt.Errorf("prepare partition %d: %w", spare, err)
	}
	// autoboot.txt already names the spare slot in [tryboot]; written again in case it was
	// damaged, so the flag finds what was just written.
	if err := a.writeAutoboot(ab); err != nil {
		return err
	}
	p.Slot = spare
	if err := a.savePending(p); err != nil {
		return fmt.Errorf("remember the pending version: %w", err)
	}
	a.tryNext = true
	a.log.WithFields(logrus.Fields{"version": p.Version, "partition": spare}).Info("installed")
	return nil
}

// copySlot copies the files of boot slot from into to (replacing what is there) except the
// kernel, initramfs and command line, which come from the update.
func copySlot(from, to string) error {
	return filepath.WalkDir(from, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		switch {
		case rel == ".":
			return nil
		case rel == rpiboot.KernelFile || rel == rpiboot.InitrdFile || rel == "cmdline.txt" || strings.HasPrefix(de.Name(), "."):
			return nil
		case de.IsDir():
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		case !de.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if old, err := os.ReadFile(filepath.Join(to, rel)); err == nil && bytes.Equal(old, data) {
			return nil
		}
		return atomicfile.Write(filepath.Join(to, rel), data, 0o644)
	})
}
