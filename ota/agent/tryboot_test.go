package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kilnproject/kiln/assembler/rpiboot"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/agent"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// pi is a simulated Raspberry Pi: its FAT partitions as directories 1, 2, 3, the firmware's
// one-shot tryboot flag and boot() doing what the firmware does with autoboot.txt.
type pi struct {
	t                    *testing.T
	parts, data, et, run string
	root                 []byte
	server               string
	flag                 bool
	reboots, tryReboots  int
	health               map[string]string
}

func (p *pi) part(n int) string { return filepath.Join(p.parts, strconv.Itoa(n)) }

func (p *pi) read(n int, name string) []byte {
	b, err := os.ReadFile(filepath.Join(p.part(n), name))
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// boot follows the firmware: autoboot.txt's [all] boot_partition, or its [tryboot] one when the
// tryboot flag is set; the flag is cleared whatever happens next. It loads the chosen
// partition's config.txt, kernel, initramfs and cmdline.txt, and returns the version booted.
func (p *pi) boot() (int, string) {
	ab, err := rpiboot.ParseAutoboot(p.read(1, rpiboot.AutobootFile))
	if err != nil {
		p.t.Fatalf("firmware: %v", err)
	}
	n := ab.Boot
	if p.flag {
		n = ab.Try
	}
	p.flag = false
	if !bytes.Contains(p.read(n, "config.txt"), []byte("kernel="+rpiboot.KernelFile)) {
		p.t.Fatalf("partition %d: config.txt does not name the kernel", n)
	}
	p.read(n, "start4.elf")
	p.read(n, "bcm2711-rpi-4-b.dtb")
	kernel, initrd := string(p.read(n, rpiboot.KernelFile)), string(p.read(n, rpiboot.InitrdFile))
	v, _ := bytes.CutPrefix([]byte(kernel), []byte("kernel "))
	if initrd != "initrd "+string(v) {
		p.t.Fatalf("partition %d: kernel %q with initramfs %q", n, kernel, initrd)
	}
	if err := os.WriteFile(p.run, p.read(n, "cmdline.txt"), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return n, string(v)
}

func (p *pi) agent(version string) *agent.Agent {
	rel := agent.Release{Name: "tiny", Version: version, Arch: "arm64", Board: "rpi", Channel: "stable",
		Server: p.server, HealthCheck: p.health[version]}
	release, root := releaseFiles(filepath.Join(p.et, version), rel, p.root)
	log := testLog()
	a, err := agent.New(agent.Config{
		Release: release, Root: root,
		ESP: filepath.Join(p.parts, "none"), State: filepath.Join(p.data, "kiln", "ota"), EFIVars: filepath.Join(p.parts, "none"),
		PiBoot: p.parts, Cmdline: p.run, DeviceTree: filepath.Join(p.parts, "none"),
		HealthAttempts: 1, HealthPause: 1,
		Reboot:    func(context.Context) error { p.reboots++; return nil },
		RebootTry: func(context.Context) error { p.tryReboots++; p.flag = true; return nil },
		Log:       log,
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

func TestTrybootUpdateCommitAndRollback(t *testing.T) {
	stub, err := os.ReadFile("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		testenv.Missing(t, "systemd-boot-efi is not installed: %v", err)
	}
	mk := func(v string) []byte {
		img, err := uki.Build(uki.Input{Stub: stub, Kernel: []byte("kernel " + v), Initrd: []byte("initrd " + v),
			Cmdline: "console=serial0,115200 kiln.slot=2 quiet"})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	keys := otatest.Keys(t)
	dir := t.TempDir()
	publish := func(v string) {
		t.Helper()
		out := otatest.Bundle(t, v, mk(v), func(b *ota.Bundle) { b.Arch, b.Board = "arm64", "rpi" })
		if _, err := repo.Publish(context.Background(), dir, keys, out, repo.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	publish("1.0.0")
	publish("1.1.0")
	srv := startServer(t, dir)

	tmp := t.TempDir()
	p := &pi{t: t, parts: filepath.Join(tmp, "boot"), data: t.TempDir(), et: t.TempDir(), run: filepath.Join(tmp, "cmdline"),
		root: keys.Root, server: srv.URL(), health: map[string]string{"1.1.0": "true", "1.2.0": "false", "1.3.0": "true"}}
	// The image as built: autoboot.txt on 1, version 1.0.0 in 2, 3 empty.
	config := []byte("[all]\narm_64bit=1\nkernel=" + rpiboot.KernelFile + "\ninitramfs " + rpiboot.InitrdFile + " followkernel\nenable_uart=1\n")
	for name, data := range map[string][]byte{
		"1/" + rpiboot.AutobootFile: rpiboot.Autoboot{Boot: 2, Try: 3}.Encode(),
		"2/config.txt":              config, "2/start4.elf": []byte("firmware"), "2/bcm2711-rpi-4-b.dtb": []byte("dtb"),
		"2/overlays/disable-bt.dtbo": []byte("overlay"),
		"2/" + rpiboot.KernelFile:    []byte("kernel 1.0.0"), "2/" + rpiboot.InitrdFile: []byte("initrd 1.0.0"),
		"2/cmdline.txt": []byte("console=serial0,115200 kiln.slot=2\n"),
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(p.parts, name)), 0o755)
		os.WriteFile(filepath.Join(p.parts, name), data, 0o644)
	}
	os.MkdirAll(p.part(3), 0o755)
	ctx := context.Background()
	table := func() ota.DeviceStatus {
		rows := srv.Devices()
		if len(rows) != 1 {
			t.Fatalf("device table has %d rows: %+v", len(rows), rows)
		}
		return rows[0]
	}
	expect := func(step string, wantPart int, wantVer string) {
		t.Helper()
		if n, v := p.boot(); n != wantPart || v != wantVer {
			t.Fatalf("%s: firmware booted %s from partition %d, want %s from %d", step, v, n, wantVer, wantPart)
		}
	}
	autoboot := func(step string, boot, try int) {
		t.Helper()
		want := "[all]\ntryboot_a_b=1\nboot_partition=" + strconv.Itoa(boot) + "\n[tryboot]\nboot_partition=" + strconv.Itoa(try) + "\n"
		if got := string(p.read(1, rpiboot.AutobootFile)); got != want {
			t.Fatalf("%s: autoboot.txt\n%s\nwant\n%s", step, got, want)
		}
	}

	// 1.0.0 boots from 2, installs 1.1.0 into 3 and reboots with the tryboot flag.
	expect("first boot", 2, "1.0.0")
	a := p.agent("1.0.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckAndInstall(ctx); err == nil || p.tryReboots != 1 || p.reboots != 0 {
		t.Fatalf("install: err %v, %d tryboot reboots, %d plain", err, p.tryReboots, p.reboots)
	}
	for name, want := range map[string]string{
		rpiboot.KernelFile: "kernel 1.1.0", rpiboot.InitrdFile: "initrd 1.1.0",
		"cmdline.txt": "console=serial0,115200 quiet kiln.slot=3\n", "config.txt": string(config),
		"start4.elf": "firmware", "bcm2711-rpi-4-b.dtb": "dtb", "overlays/disable-bt.dtbo": "overlay",
	} {
		if got := string(p.read(3, name)); got != want {
			t.Errorf("partition 3 %s = %q, want %q", name, got, want)
		}
	}
	autoboot("after install", 2, 3)
	if row := table(); row.State != ota.StateInstalled || row.Target != "1.1.0" {
		t.Fatalf("after install: %+v", row)
	}

	// The trial boot of 3 passes its health check and commits 3; plain resets then stay on it.
	expect("trial boot", 3, "1.1.0")
	if err := p.agent("1.1.0").Assess(ctx); err != nil {
		t.Fatal(err)
	}
	autoboot("after commit", 3, 2)
	if row := table(); row.State != ota.StateHealthy || row.Version != "1.1.0" {
		t.Fatalf("after commit: %+v", row)
	}
	expect("reset after commit", 3, "1.1.0")
	if err := p.agent("1.1.0").Assess(ctx); err != nil || p.reboots != 0 {
		t.Fatalf("normal boot of the committed slot: %v, %d reboots", err, p.reboots)
	}

	// A broken 1.2.0 goes into 2, fails its health check in the trial boot and reboots; the
	// firmware is back on 3, whose agent reports the rollback and skips 1.2.0 from then on.
	publish("1.2.0")
	a = p.agent("1.1.0")
	if err := a.CheckAndInstall(ctx); err == nil || p.tryReboots != 2 {
		t.Fatalf("install 1.2.0: err %v, %d tryboot reboots", err, p.tryReboots)
	}
	if got := string(p.read(2, "cmdline.txt")); got != "console=serial0,115200 quiet kiln.slot=2\n" {
		t.Fatalf("partition 2 cmdline.txt %q", got)
	}
	autoboot("after installing 1.2.0", 3, 2)
	expect("trial of 1.2.0", 2, "1.2.0")
	p.agent("1.2.0").Assess(ctx)
	if p.reboots != 1 {
		t.Fatalf("unhealthy trial: %d plain reboots, want 1", p.reboots)
	}
	if b, _ := os.ReadFile(filepath.Join(p.data, "kiln", "ota", "pending.json")); !bytes.Contains(b, []byte(`"rebooted":true,"tried":true`)) {
		t.Fatalf("pending after the trial: %s", b)
	}
	autoboot("after the failed trial", 3, 2)
	expect("reset after the failed trial", 3, "1.1.0")
	a = p.agent("1.1.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if row := table(); row.State != ota.StateRolledBack || row.Version != "1.1.0" || row.Target != "1.2.0" {
		t.Fatalf("after rollback: %+v", row)
	}
	if err := a.CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
		t.Fatalf("check after rollback: %v, want ErrNoUpdate (1.2.0 is not retried)", err)
	}

	// 1.3.0's trial boot loses power before its agent commits: the next power-on boots 3.
	publish("1.3.0")
	if err := a.CheckAndInstall(ctx); err == nil || p.tryReboots != 3 {
		t.Fatalf("install 1.3.0: err %v, %d tryboot reboots", err, p.tryReboots)
	}
	expect("trial of 1.3.0", 2, "1.3.0")
	expect("power-on after a cut during the trial", 3, "1.1.0")
	if err := p.agent("1.1.0").Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if row := table(); row.State != ota.StateRolledBack || row.Target != "1.3.0" {
		t.Fatalf("after the cut trial: %+v", row)
	}

	// A power cut while 1.3.0 is written (before the tryboot reboot) leaves 3 committed and
	// the update untried: it is not marked failed.
	os.MkdirAll(filepath.Join(p.data, "kiln", "ota"), 0o755)
	os.WriteFile(filepath.Join(p.data, "kiln", "ota", "pending.json"), []byte(`{"version":"1.4.0","base":"tiny-1.4.0","from":"1.1.0","slot":2}`), 0o644)
	expect("power-on after a cut during install", 3, "1.1.0")
	if err := p.agent("1.1.0").Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(p.data, "kiln", "ota", "failed")); bytes.Contains(b, []byte("1.4.0")) {
		t.Fatalf("an untried update was marked failed: %q", b)
	}
	if row := table(); row.State != ota.StateHealthy || row.Version != "1.1.0" {
		t.Fatalf("after the cut install: %+v", row)
	}
}

// A damaged autoboot.txt is rewritten with the booted partition committed.
func TestTrybootDamagedAutoboot(t *testing.T) {
	tmp := t.TempDir()
	p := &pi{t: t, parts: filepath.Join(tmp, "boot"), data: t.TempDir(), et: t.TempDir(), run: filepath.Join(tmp, "cmdline")}
	os.MkdirAll(p.part(1), 0o755)
	os.WriteFile(filepath.Join(p.part(1), rpiboot.AutobootFile), []byte("\x00garbage\n"), 0o644)
	os.WriteFile(p.run, []byte("console=serial0,115200 kiln.slot=3 quiet\n"), 0o644)
	if err := p.agent("1.0.0").Assess(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := string(p.read(1, rpiboot.AutobootFile)), string(rpiboot.Autoboot{Boot: 3, Try: 2}.Encode()); got != want {
		t.Fatalf("autoboot.txt %q, want %q", got, want)
	}
}
