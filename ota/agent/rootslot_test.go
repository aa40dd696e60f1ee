package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/agent"
	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// disks is a fake /sys/class/block and /dev: each partition is a file under dev, described in
// sysfs as the kernel describes a GPT partition (uevent with PARTNAME, size in sectors), under
// the directory of its disk.
type disks struct {
	t             *testing.T
	sys, dev, top string
	minor         int
}

func newDisks(t *testing.T) *disks {
	dir := t.TempDir()
	d := &disks{t: t, sys: filepath.Join(dir, "class", "block"), dev: filepath.Join(dir, "dev"), top: filepath.Join(dir, "devices")}
	for _, p := range []string{d.sys, d.dev, d.top} {
		os.MkdirAll(p, 0o755)
	}
	return d
}

// add makes partition name (e.g. "sda2") of disk with GPT name label and size bytes; it returns
// its "MAJOR:MINOR".
func (d *disks) add(disk, name, label string, size int64) string {
	d.minor++
	dir := filepath.Join(d.top, disk, name)
	os.MkdirAll(dir, 0o755)
	ue := fmt.Sprintf("MAJOR=8\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=1\nPARTNAME=%s\n", d.minor, name, label)
	os.WriteFile(filepath.Join(dir, "uevent"), []byte(ue), 0o644)
	os.WriteFile(filepath.Join(dir, "size"), []byte(fmt.Sprintf("%d\n", size/512)), 0o644)
	if err := os.Symlink(dir, filepath.Join(d.sys, name)); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dev, name), nil, 0o600); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(d.dev, name), size); err != nil {
		d.t.Fatal(err)
	}
	return fmt.Sprintf("8:%d", d.minor)
}

func (d *disks) write(name string, data []byte) {
	f, err := os.OpenFile(filepath.Join(d.dev, name), os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		d.t.Fatal(err)
	}
}

// holds reports whether partition name starts with data.
func (d *disks) holds(name string, data []byte) bool {
	b, err := os.ReadFile(filepath.Join(d.dev, name))
	if err != nil {
		d.t.Fatal(err)
	}
	return bytes.HasPrefix(b, data)
}

// zero reports whether partition name holds only zeros.
func (d *disks) zero(name string) bool {
	b, _ := os.ReadFile(filepath.Join(d.dev, name))
	return bytes.Count(b, []byte{0}) == len(b)
}

// TestRootUpdateGoesIntoTheSpareSlot follows a package image through updates: each root goes
// into the slot the running system did not mount, on the running disk only (a second Kiln
// drive plugged in is never written), as a delta when the running root is the patch's base;
// the kernel image that mounts it is installed only after the root reads back as signed, and a
// bad root or one too large for the slot leaves the device as it was.
func TestRootUpdateGoesIntoTheSpareSlot(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki := map[string][]byte{"1.0.0": otatest.Payload(1<<20, 1)}
	uki["1.1.0"] = append(bytes.Clone(uki["1.0.0"]), "1.1.0"...)
	uki["1.2.0"] = append(bytes.Clone(uki["1.1.0"]), "1.2.0"...)
	uki["1.3.0"] = append(bytes.Clone(uki["1.2.0"]), "1.3.0"...)
	uki["1.4.0"] = append(bytes.Clone(uki["1.2.0"]), "1.4.0"...)
	root := map[string][]byte{"1.0.0": otatest.Payload(6<<20, 2)}
	root["1.1.0"] = append(bytes.Clone(root["1.0.0"]), otatest.Payload(64<<10, 3)...) // adds a package
	root["1.2.0"] = otatest.Payload(7<<20, 4)
	root["1.3.0"] = otatest.Payload(7<<20, 5)
	root["1.4.0"] = otatest.Payload(20<<20, 6) // larger than a slot
	publish := func(v string) {
		if _, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, v, uki[v], root[v]), repo.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	publish("1.0.0")
	publish("1.1.0")

	srv := startServer(t, dir)

	// The device's disk (sda) and a plugged-in Kiln stick (sdb) with the same partition names.
	disk := newDisks(t)
	devA := disk.add("sda", "sda2", ota.RootSlotA, 16<<20)
	devB := disk.add("sda", "sda3", ota.RootSlotB, 16<<20)
	disk.add("sdb", "sdb2", ota.RootSlotA, 16<<20)
	disk.add("sdb", "sdb3", ota.RootSlotB, 16<<20)
	disk.write("sda2", root["1.0.0"])
	running, rootDev := filepath.Join(t.TempDir(), "root"), devA
	logs := new(logtest.Hook)
	d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
		root: keys.Root, server: srv.URL(), uki: uki, health: map[string]string{},
		config: func(c *agent.Config) {
			c.RunningRoot, c.SysBlock, c.Dev = running, disk.sys, disk.dev
			c.RootDevice = func() (string, error) { return rootDev, nil }
			c.Log.AddHook(logs)
		}}
	os.MkdirAll(d.linux(), 0o755)
	os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), uki["1.0.0"], 0o644)
	os.WriteFile(running, []byte(ota.RootSlotA+"\n"), 0o644)
	ctx := context.Background()
	logged := func(msg string) bool {
		for _, e := range logs.AllEntries() {
			if e.Message == msg {
				return true
			}
		}
		return false
	}

	// 1.0.0 runs from root-a: 1.1.0's root goes into root-b as a delta, then its UKI.
	d.boot()
	a := d.agent("1.0.0")
	a.Assess(ctx)
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 1 {
		t.Fatalf("install 1.1.0: err %v, %d reboots", err, d.reboots)
	}
	if !disk.holds("sda3", root["1.1.0"]) || !disk.holds("sda2", root["1.0.0"]) {
		t.Fatal("1.1.0's root is not in root-b, or root-a changed")
	}
	if !logged("applied root delta") {
		t.Error("the root came in full although the running root is the delta's base")
	}
	if got := d.files(); len(got) != 2 || got[1] != "tiny-1.1.0+3.efi" {
		t.Fatalf("ESP after install: %v", got)
	}

	// 1.1.0 boots from root-b and is blessed; 1.2.0 (no delta: all new) goes into root-a,
	// after 1.0.0's kernel image, which mounted root-a, is gone.
	d.boot()
	os.WriteFile(running, []byte(ota.RootSlotB+"\n"), 0o644)
	rootDev = devB
	d.agent("1.1.0").Assess(ctx)
	publish("1.2.0")
	a = d.agent("1.1.0")
	a.Assess(ctx)
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 2 {
		t.Fatalf("install 1.2.0: err %v, %d reboots", err, d.reboots)
	}
	if !disk.holds("sda2", root["1.2.0"]) || !disk.holds("sda3", root["1.1.0"]) {
		t.Fatal("1.2.0's root is not in root-a, or root-b changed")
	}
	if got := d.files(); len(got) != 2 || got[0] != "tiny-1.1.0.efi" || got[1] != "tiny-1.2.0+3.efi" {
		t.Fatalf("ESP after installing 1.2.0: %v", got)
	}
	if !disk.zero("sdb2") || !disk.zero("sdb3") {
		t.Fatal("the plugged-in drive was written")
	}

	// Say 1.2.0 failed and the device went back to 1.1.0 on root-b. A 1.3.0 whose root the
	// server corrupts is refused before its kernel image is installed.
	os.Remove(filepath.Join(d.linux(), "tiny-1.2.0+3.efi"))
	publish("1.3.0")
	tamper(t, dir, "tiny-1.3.0.root")
	a = d.agent("1.1.0")
	a.Assess(ctx)
	err := a.CheckAndInstall(ctx)
	if !errors.Is(err, client.ErrHashMismatch) || d.reboots != 2 {
		t.Fatalf("install of a corrupted root: err %v, %d reboots; want a hash mismatch and no reboot", err, d.reboots)
	}
	if got := d.files(); len(got) != 1 || got[0] != "tiny-1.1.0.efi" {
		t.Fatalf("ESP after the refused root: %v", got)
	}
	if !disk.holds("sda3", root["1.1.0"]) {
		t.Fatal("the running root changed")
	}

	// A root larger than the slot is refused with what to do, before anything is written.
	d.config = func(c *agent.Config) {
		c.RunningRoot, c.SysBlock, c.Dev = running, disk.sys, disk.dev
		c.RootDevice = func() (string, error) { return rootDev, nil }
	}
	disk.write("sda2", make([]byte, 8<<20))
	publish("1.4.0")
	a = d.agent("1.1.0")
	a.Assess(ctx)
	err = a.CheckAndInstall(ctx)
	if err == nil || !strings.Contains(err.Error(), "root_size") || d.reboots != 2 {
		t.Fatalf("install of a root larger than its slot: err %v, %d reboots", err, d.reboots)
	}
	if !disk.zero("sda2") {
		t.Fatal("a root too large for its slot was partly written")
	}
}

// TestRootSlotsAmbiguous: without a running-slot file, or with one the sysfs cannot place on a
// single disk, nothing is written.
func TestRootSlotsAmbiguous(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki := map[string][]byte{"1.0.0": otatest.Payload(64<<10, 1), "1.1.0": otatest.Payload(64<<10, 2)}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := repo.Publish(context.Background(), dir, keys, otatest.RootBundle(t, v, uki[v], otatest.Payload(1<<20, 3)), repo.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, dir)
	disk := newDisks(t)
	disk.add("sda", "sda2", ota.RootSlotA, 4<<20)
	disk.add("sda", "sda3", ota.RootSlotB, 4<<20)
	disk.add("sdb", "sdb2", ota.RootSlotA, 4<<20)
	disk.add("sdb", "sdb3", ota.RootSlotB, 4<<20)
	running := filepath.Join(t.TempDir(), "root")
	for _, tc := range []struct {
		name, file, dev, want string
	}{
		{"no running-slot file", "", "8:1", "no A/B root"},
		{"garbage in the running-slot file", "root-c", "8:1", `not root-a or root-b`},
		{"/ on neither disk", ota.RootSlotA, "9:9", "unplug other Kiln drives"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(running)
			if tc.file != "" {
				os.WriteFile(running, []byte(tc.file), 0o644)
			}
			d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
				root: keys.Root, server: srv.URL(), uki: uki,
				config: func(c *agent.Config) {
					c.RunningRoot, c.SysBlock, c.Dev = running, disk.sys, disk.dev
					c.RootDevice = func() (string, error) { return tc.dev, nil }
				}}
			os.MkdirAll(d.linux(), 0o755)
			os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), uki["1.0.0"], 0o644)
			d.boot()
			a := d.agent("1.0.0")
			a.Assess(ctx(t))
			err := a.CheckAndInstall(ctx(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) || d.reboots != 0 {
				t.Fatalf("err %v (%d reboots), want one saying %q", err, d.reboots, tc.want)
			}
			for _, p := range []string{"sda2", "sda3", "sdb2", "sdb3"} {
				if !disk.zero(p) {
					t.Fatalf("%s was written", p)
				}
			}
			if got := d.files(); len(got) != 1 {
				t.Fatalf("ESP: %v", got)
			}
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// tamper flips a byte in the repository's stored copy of the target whose path ends in suffix.
func tamper(t *testing.T, dir, suffix string) {
	t.Helper()
	des, _ := os.ReadDir(filepath.Join(dir, "targets"))
	for _, de := range des {
		if strings.HasSuffix(de.Name(), suffix) {
			p := filepath.Join(dir, "targets", de.Name())
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no target %s", suffix)
}
