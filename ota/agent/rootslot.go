package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/delta"
)

// A package image keeps its read-only root filesystem in one of two GPT partitions named
// ota.RootSlotA and ota.RootSlotB; each kernel image finds its own root by content. An update
// writes the new root into the slot the running system did not mount, checks it by reading it
// back, and only then installs the kernel image that mounts it. Until then no boot entry names
// the spare slot (install removes the old entries first), so a cut at any point leaves the
// running version and its fallback intact.

// partition is a block device partition as sysfs describes it.
type partition struct {
	Name   string // kernel name, e.g. "sda2"
	Dev    string // "MAJOR:MINOR"
	Label  string // GPT partition name
	Parent string // sysfs directory of the disk it belongs to
	Size   int64  // bytes
}

// partitions lists the partitions under sysBlock (/sys/class/block) that carry a GPT name.
func partitions(sysBlock string) ([]partition, error) {
	des, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, err
	}
	var out []partition
	for _, de := range des {
		dir := filepath.Join(sysBlock, de.Name())
		ue, err := os.ReadFile(filepath.Join(dir, "uevent"))
		if err != nil || len(ue) > 4096 {
			continue
		}
		p := partition{Name: de.Name()}
		for _, line := range strings.Split(string(ue), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "PARTNAME":
				p.Label = v
			case "MAJOR":
				p.Dev = v + p.Dev
			case "MINOR":
				p.Dev += ":" + v
			}
		}
		if p.Label == "" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "size")); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < 1<<53 {
				p.Size = n * 512
			}
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue
		}
		p.Parent = filepath.Dir(real)
		out = append(out, p)
	}
	return out, nil
}

// rootSlots returns the partition the running root was mounted from and the spare one on the
// same disk. The running slot's name comes from RunningRoot (written by the image's init); when
// several disks have a partition of that name (a second Kiln drive plugged in), the device of
// "/" decides, and without a unique answer nothing is written.
func (a *Agent) rootSlots() (running, spare partition, err error) {
	b, err := os.ReadFile(a.cfg.RunningRoot)
	if err != nil {
		return running, spare, fmt.Errorf("which root slot is running: %w (this image has no A/B root)", err)
	}
	name := strings.TrimSpace(string(b))
	other := map[string]string{ota.RootSlotA: ota.RootSlotB, ota.RootSlotB: ota.RootSlotA}[name]
	if other == "" {
		return running, spare, fmt.Errorf("which root slot is running: %s says %q, not %s or %s", a.cfg.RunningRoot, clip(name, 40), ota.RootSlotA, ota.RootSlotB)
	}
	parts, err := partitions(a.cfg.SysBlock)
	if err != nil {
		return running, spare, fmt.Errorf("list partitions: %w", err)
	}
	var cands []partition
	for _, p := range parts {
		if p.Label == name {
			cands = append(cands, p)
		}
	}
	if len(cands) > 1 {
		dev, err := a.cfg.RootDevice()
		if err != nil {
			return running, spare, fmt.Errorf("which root slot is running: %w", err)
		}
		var same []partition
		for _, p := range cands {
			if p.Dev == dev {
				same = append(same, p)
			}
		}
		cands = same
	}
	if len(cands) != 1 {
		return running, spare, fmt.Errorf("which root slot is running: %d partitions named %s are the one / is mounted from; unplug other Kiln drives", len(cands), name)
	}
	running = cands[0]
	var spares []partition
	for _, p := range parts {
		if p.Label == other && p.Parent == running.Parent {
			spares = append(spares, p)
		}
	}
	if len(spares) != 1 {
		return running, spare, fmt.Errorf("find the spare root slot: %d partitions named %s on the running disk", len(spares), other)
	}
	return running, spares[0], nil
}

// slotFile is a partition seen as a file of length n, so that client.Download can write into it,
// resume after a cut connection and restart from zero; what lies past n is ignored.
type slotFile struct {
	f        *os.File
	n, off   int64
	capacity int64
}

func (s *slotFile) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.n-s.off)]
	k, err := s.f.ReadAt(p, s.off)
	s.off += int64(k)
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, err
}

func (s *slotFile) Write(p []byte) (int, error) {
	if s.off+int64(len(p)) > s.capacity {
		return 0, fmt.Errorf("write root slot: %d bytes do not fit its %d", s.off+int64(len(p)), s.capacity)
	}
	k, err := s.f.WriteAt(p, s.off)
	s.off += int64(k)
	s.n = max(s.n, s.off)
	return k, err
}

func (s *slotFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += s.n
	}
	if off < 0 {
		return s.off, errors.New("seek before the start of the root slot")
	}
	s.off = off
	return off, nil
}

func (s *slotFile) Truncate(n int64) error { s.n = min(n, s.n); return nil }
func (s *slotFile) Sync() error            { return s.f.Sync() }

// installRoot writes sel.Root into the spare root slot — from a delta against the running root
// when one is offered and the running root reads back as the signed base, else in full — and
// checks it by reading it back from the device.
func (a *Agent) installRoot(ctx context.Context, c *client.Client, sel ota.Selection, pf progress.Func) (string, error) {
	t := *sel.Root
	running, spare, err := a.rootSlots()
	if err != nil {
		return "", err
	}
	if t.Size <= 0 || t.Size > spare.Size {
		return "", fmt.Errorf("root %s (%d bytes) does not fit the spare root slot %s (%d bytes): reflash with a larger [board] root_size", t.Path, t.Size, spare.Label, spare.Size)
	}
	f, err := os.OpenFile(filepath.Join(a.cfg.Dev, spare.Name), os.O_RDWR|exclusive, 0)
	if err != nil {
		return "", fmt.Errorf("open spare root slot %s: %w", spare.Label, err)
	}
	defer f.Close()
	sf := &slotFile{f: f, capacity: spare.Size}
	a.log.WithFields(logrus.Fields{"version": t.Version, "slot": spare.Label, "device": spare.Name}).Info("writing the new root")
	done := false
	if d := sel.RootDelta; d != nil && a.runningRoot != nil && d.FromSHA256 == a.runningRoot.SHA256 {
		if err := a.rootFromDelta(ctx, c, *d, t, running, sf, pf); err != nil {
			a.log.WithError(err).Warn("root delta failed; downloading the full root")
		} else {
			done = true
		}
	}
	if !done {
		sf.n, sf.off = 0, 0
		if err := c.Download(ctx, t, sf, pf); err != nil {
			return "", fmt.Errorf("root %s: %w", t.Version, err)
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("root %s: sync: %w", t.Version, err)
	}
	dropCache(f)
	sum, err := hashPrefix(ctx, f, t.Size)
	if err != nil {
		return "", fmt.Errorf("root %s: read back %s: %w", t.Version, spare.Name, err)
	}
	if sum != t.SHA256 {
		return "", fmt.Errorf("root %s: %s reads back as sha256 %s, not the signed %s: the drive may be failing", t.Version, spare.Name, sum, t.SHA256)
	}
	a.log.WithFields(logrus.Fields{"version": t.Version, "slot": spare.Label, "bytes": t.Size}).Info("root written and read back")
	return spare.Label, nil
}

// rootFromDelta applies a root delta: the base is the running root slot's first base.Size
// bytes, which must hash to the patch's signed base.
func (a *Agent) rootFromDelta(ctx context.Context, c *client.Client, d, full ota.Target, running partition, sf *slotFile, pf progress.Func) error {
	base := a.runningRoot
	if base.Size > delta.MaxBase || base.Size > running.Size {
		return fmt.Errorf("root delta: base of %d bytes: %w", base.Size, delta.ErrBaseTooLarge)
	}
	rf, err := os.Open(filepath.Join(a.cfg.Dev, running.Name))
	if err != nil {
		return err
	}
	old := make([]byte, base.Size)
	_, err = io.ReadFull(io.NewSectionReader(rf, 0, base.Size), old)
	rf.Close()
	if err != nil {
		return fmt.Errorf("read the running root: %w", err)
	}
	if s := sha256.Sum256(old); hex.EncodeToString(s[:]) != d.FromSHA256 {
		return errors.New("the running root slot does not hold the root the patch applies to")
	}
	patch, cleanup, err := a.downloadPatch(ctx, c, d, pf)
	if err != nil {
		return err
	}
	defer cleanup()
	sf.n, sf.off = 0, 0
	h := sha256.New()
	n, err := delta.Apply(ctx, io.MultiWriter(sf, h), old, patch, full.Size)
	if err != nil {
		return err
	}
	if n != full.Size || hex.EncodeToString(h.Sum(nil)) != full.SHA256 {
		return fmt.Errorf("root delta result: %w", client.ErrHashMismatch)
	}
	a.log.WithFields(logrus.Fields{"patch": d.Size, "full": full.Size}).Info("applied root delta")
	return nil
}

// hashPrefix returns the sha256 of f's first n bytes.
func hashPrefix(ctx context.Context, f *os.File, n int64) (string, error) {
	h := sha256.New()
	r := io.NewSectionReader(f, 0, n)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		k, err := r.Read(buf)
		h.Write(buf[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// runningRootDev is the "MAJOR:MINOR" of the device "/" is mounted from.
func runningRootDev() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	dev := "" // the last mount on "/" is the one in effect
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) > 4 && f[4] == "/" {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", errors.New("/ is not in /proc/self/mountinfo")
	}
	return dev, nil
}
