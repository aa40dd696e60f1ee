// Package e2e tests over-the-air updates end to end: real images of the default recipe, booted
// in QEMU (TCG, OVMF) from a writable copy of the disk, updated by the real kiln-agent from the
// real update server.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
	"github.com/kilnproject/kiln/vmrunner"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago: the images must name the
// server's URL before the server can start (it needs a published repository).
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func build(t *testing.T, keys *repo.Keys, board, version, server, health string) *assembler.Result {
	t.Helper()
	toml := fmt.Sprintf("kiln = 1\nname = \"kiln-tiny\"\nversion = %q\n\n[board]\nname = %q\n\n[update]\nserver = %q\nhealth_check = %q\n",
		version, board, server, health)
	r, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	opts := testimage.Options(t)
	if a := r.DebianArch(); a != "amd64" {
		opts = testimage.OptionsArch(t, a, r.Kernel.Package, r.System.Busybox, r.Board.Bootloader)
	}
	opts.Log.SetLevel(logrus.WarnLevel)
	opts.OutDir = filepath.Join(t.TempDir(), "out-"+version)
	opts.TrustedRoot = keys.Root
	res, err := assembler.Build(context.Background(), r, opts)
	if err != nil {
		t.Fatalf("build %s: %v", version, err)
	}
	return res
}

func publish(t *testing.T, dir string, keys *repo.Keys, res *assembler.Result) {
	t.Helper()
	pub, err := repo.Publish(context.Background(), dir, keys, res.UpdateDir, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("published %s %s (%d bytes, %d deltas)", pub.Target.Name, pub.Target.Version, pub.Target.Size, len(pub.Deltas))
	for _, d := range pub.Deltas {
		t.Logf("  delta from %s: %d bytes (%.1f%%)", d.From, d.Size, 100*float64(d.Size)/float64(pub.Target.Size))
	}
}

// console follows the serial console line by line, so that expectations match in order.
type console struct {
	t     *testing.T
	vm    *vmrunner.VM
	lines chan string
	log   *os.File
}

func follow(t *testing.T, vm *vmrunner.VM) *console {
	c := &console{t: t, vm: vm, lines: make(chan string, 4096)}
	c.log, _ = os.Create(filepath.Join(t.TempDir(), "serial.log"))
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(vm.Serial())
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			fmt.Fprintln(c.log, line)
			c.lines <- line
		}
	}()
	return c
}

// expect waits for a line containing want; a line containing any of fail ends the test.
func (c *console) expect(ctx context.Context, want string, fail ...string) string {
	c.t.Helper()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("console ended while waiting for %q", want)
			}
			for _, f := range fail {
				if strings.Contains(line, f) {
					c.t.Fatalf("console: %q while waiting for %q", line, want)
				}
			}
			if strings.Contains(line, want) {
				c.t.Logf("console: %s", line)
				return line
			}
			if strings.HasPrefix(line, "kiln") || strings.Contains(line, "FAT-fs") {
				c.t.Logf("console: %s", line)
			}
		case <-ctx.Done():
			c.t.Fatalf("timed out waiting for %q on the serial console", want)
		}
	}
}

func device(t *testing.T, srv *server.Server) ota.DeviceStatus {
	t.Helper()
	rows := srv.Devices()
	if len(rows) != 1 {
		t.Fatalf("device table: %+v, want one device", rows)
	}
	return rows[0]
}

// waitDevice polls the device table until ok accepts the device's row.
func waitDevice(ctx context.Context, t *testing.T, srv *server.Server, what string, ok func(ota.DeviceStatus) bool) {
	t.Helper()
	for {
		if rows := srv.Devices(); len(rows) == 1 && ok(rows[0]) {
			t.Logf("device table: %+v", rows[0])
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("device table never showed %s: %+v", what, srv.Devices())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// needUEFIMachine fails the test (skips it outside CI) when QEMU or the UEFI firmware of machine
// is missing, and prepares the input cache.
func needUEFIMachine(t *testing.T, machine string) {
	m := vmrunner.Machines[machine]
	if _, err := vmrunner.FindQEMUFor("", m); err != nil {
		testimage.Missing(t, "QEMU not installed: "+err.Error())
	}
	if _, err := vmrunner.FindUEFIFor(nil, "", m); err != nil {
		testimage.Missing(t, "UEFI firmware not installed: "+err.Error())
	}
	testimage.Cache(t)
}

// serve starts the update server for the repository in dir on 127.0.0.1:port with a device
// store; both stop when the test ends.
func serve(ctx context.Context, t *testing.T, dir string, port int) (*server.Server, *fleet.DB) {
	store, err := fleet.Open(ctx, filepath.Join(t.TempDir(), "devices.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv, err := server.New(server.Config{Repo: dir, Addr: fmt.Sprintf("127.0.0.1:%d", port), PollInterval: 5 * time.Second, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	return srv, store
}

// bootDevice boots image on machine (UEFI, TCG, 2 CPUs, 1 GiB) from a writable copy of the disk
// and follows its serial console, saved for a failed test; the VM stops when the test ends.
func bootDevice(ctx context.Context, t *testing.T, image, machine string) *console {
	vm, err := vmrunner.Start(ctx, vmrunner.Config{
		Image: image, Persist: filepath.Join(t.TempDir(), "disk.img"), Machine: machine,
		Firmware: vmrunner.FirmwareUEFI, Accel: vmrunner.AccelTCG, CPUs: 2, MemoryMiB: 1024,
		Display: vmrunner.DisplayNone,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop() })
	con := follow(t, vm)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial console saved in %s", con.log.Name())
		}
	})
	return con
}

func TestUpdateAndRollbackInQEMU(t *testing.T) { updateAndRollback(t, "pc", "q35") }

// The same on the arm64-uefi board: QEMU virt, AAVMF, systemd-boot's boot counting on arm64.
func TestUpdateAndRollbackArm64(t *testing.T) { updateAndRollback(t, "arm64-uefi", "virt") }

// updateAndRollback installs 1.1.0 over 1.0.0 and survives a broken 1.2.0 on a board, booted on a
// QEMU machine.
func updateAndRollback(t *testing.T, board, machine string) {
	needUEFIMachine(t, machine)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	t.Cleanup(cancel) // after the server and the VM stop

	keys := otatest.Keys(t)
	port := freePort(t)
	url := fmt.Sprintf("http://10.0.2.2:%d", port)
	v100 := build(t, keys, board, "1.0.0", url, "")
	v110 := build(t, keys, board, "1.1.0", url, "test -d /data && test -d /boot/efi/EFI/Linux")
	v120 := build(t, keys, board, "1.2.0", url, "false")

	dir := t.TempDir()
	publish(t, dir, keys, v100)
	publish(t, dir, keys, v110)
	srv, store := serve(ctx, t, dir, port)

	con := bootDevice(ctx, t, v100.Image, machine)

	// 1.0.0 boots, finds 1.1.0 and installs it; the boot loader tries 1.1.0, which is healthy.
	con.expect(ctx, "kiln: ready name=kiln-tiny version=1.0.0")
	con.expect(ctx, "kiln-agent: healthy version=1.0.0")
	con.expect(ctx, "kiln-agent: installed", "kiln-agent: error")
	con.expect(ctx, "kiln: ready name=kiln-tiny version=1.1.0")
	con.expect(ctx, "kiln-agent: healthy version=1.1.0", "unhealthy")
	waitDevice(ctx, t, srv, "1.1.0 healthy", func(d ota.DeviceStatus) bool {
		return d.Version == "1.1.0" && d.State == ota.StateHealthy
	})

	// A broken 1.2.0, staged: first to a share of devices that just leaves this one out ...
	id := device(t, srv).ID
	bucket := fleet.Bucket(id, "1.2.0")
	if err := store.SetRollout(ctx, fleet.NewRollout("1.2.0", bucket)); err != nil {
		t.Fatal(err)
	}
	publish(t, dir, keys, v120)
	waitHistory(ctx, t, srv, id, "1.2.0 is rolled out to "+fleet.FormatShare(bucket)+" of devices; this one is not among them yet")
	// ... then to one that takes it in. It is tried three times, then 1.1.0 comes back by
	// itself, and the rollout pauses itself.
	if err := store.SetRollout(ctx, fleet.NewRollout("1.2.0", bucket+1)); err != nil {
		t.Fatal(err)
	}
	con.expect(ctx, "kiln-agent: installed", "kiln-agent: error")
	for try := 1; try <= 3; try++ {
		con.expect(ctx, "kiln: ready name=kiln-tiny version=1.2.0")
		con.expect(ctx, "kiln-agent: warning: unhealthy")
	}
	con.expect(ctx, "kiln: ready name=kiln-tiny version=1.1.0")
	con.expect(ctx, "kiln-agent: warning: rolled-back from=1.2.0 version=1.1.0")
	waitDevice(ctx, t, srv, "the rollback", func(d ota.DeviceStatus) bool {
		return d.Version == "1.1.0" && d.State == ota.StateRolledBack && d.Target == "1.2.0"
	})
	d := device(t, srv)
	if !strings.Contains(d.Message, "never became healthy") {
		t.Errorf("rollback message %q", d.Message)
	}
	// The device's history, as stored: the install of 1.1.0, its health, the rollback of 1.2.0.
	hist, err := srv.History(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range hist {
		seen[e.State+" "+e.Version+" → "+e.Target] = true
	}
	for _, want := range []string{"update-available 1.0.0 → 1.1.0", "healthy 1.1.0 → 1.1.0", "rolled-back 1.1.0 → 1.2.0"} {
		if !seen[want] {
			t.Errorf("history lacks %q: %+v", want, hist)
		}
	}
	// The rollout of 1.2.0 paused itself after this first rollback, and says why.
	ro, err := store.Rollout(ctx, "1.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if !ro.Paused || ro.Tried != 1 || ro.RolledBack != 1 || !strings.Contains(ro.Reason, "1 of 1 devices that installed 1.2.0 rolled back") {
		t.Fatalf("rollout of 1.2.0 after the rollback: %+v", ro)
	}
	waitHistory(ctx, t, srv, id, "the rollout of 1.2.0 is paused automatically")
}

// waitHistory waits until the newest event of device id's history contains msg.
func waitHistory(ctx context.Context, t *testing.T, srv *server.Server, id, msg string) {
	t.Helper()
	for {
		hist, err := srv.History(ctx, id, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) == 1 && strings.Contains(hist[0].Message, msg) {
			t.Logf("history: %+v", hist[0])
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the device's history never said %q: %+v", msg, hist)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
