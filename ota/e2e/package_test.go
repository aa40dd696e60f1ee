package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// buildPackages builds version of a package image with packages, its root filesystem on the
// A/B root partitions.
func buildPackages(t *testing.T, keys *repo.Keys, version, server, health string, packages ...string) *assembler.Result {
	t.Helper()
	toml := fmt.Sprintf("kiln = 1\nname = \"garden\"\nversion = %q\n\n[board]\ndisk_size = \"1GiB\"\n\n[system]\npackages = [\"%s\"]\n\n[update]\nserver = %q\nhealth_check = %q\n",
		version, strings.Join(packages, `", "`), server, health)
	r, err := recipe.Parse(filepath.Join(t.TempDir(), "kiln.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	opts := testimage.Options(t)
	opts.Log.SetLevel(logrus.WarnLevel)
	opts.OutDir = filepath.Join(t.TempDir(), "out-"+version)
	opts.TrustedRoot = keys.Root
	res, err := assembler.Build(context.Background(), r, opts)
	if err != nil {
		t.Fatalf("build %s: %v", version, err)
	}
	b, err := ota.LoadBundle(res.UpdateDir)
	if err != nil || b.Root == nil {
		t.Fatalf("the update bundle of package image %s has no root filesystem: %+v, %v", version, b, err)
	}
	return res
}

// TestPackageImageUpdateAndRollback updates a package image over the air: 1.0.0 (hello) gets
// 1.1.0, which adds a package; its root goes into the spare root partition and its kernel
// image mounts it. A broken 1.2.0 (another package, failing health check) is tried three times
// and the device comes back to 1.1.0 by itself — kernel and root together: 1.1.0's health
// check, run again after the rollback, passes only on 1.1.0's root, from the slot it was
// installed in.
func TestPackageImageUpdateAndRollback(t *testing.T) {
	if srcs, err := archive.HostSources("/"); err != nil || len(srcs) == 0 {
		testimage.Missing(t, "the host has no apt sources to take packages from")
	}
	needUEFIMachine(t, "q35")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel) // after the server and the VM stop

	keys := otatest.Keys(t)
	port := freePort(t)
	url := fmt.Sprintf("http://10.0.2.2:%d", port)
	// Each version's health check names what only its own root holds, and the slot it runs from.
	v100 := buildPackages(t, keys, "1.0.0", url, "test -x /usr/bin/hello && grep -qx "+ota.RootSlotA+" "+ota.RunningRootFile, "hello")
	v110 := buildPackages(t, keys, "1.1.0", url, "test -x /usr/bin/tree && ! test -e /usr/bin/jq && grep -qx "+ota.RootSlotB+" "+ota.RunningRootFile, "hello", "tree")
	v120 := buildPackages(t, keys, "1.2.0", url, "test -x /usr/bin/jq && false", "hello", "tree", "jq")

	dir := t.TempDir()
	publish(t, dir, keys, v100)
	publish(t, dir, keys, v110)
	srv, _ := serve(ctx, t, dir, port)

	con := bootDevice(ctx, t, v100.Image, "q35")

	con.expect(ctx, "kiln: ready name=garden version=1.0.0")
	con.expect(ctx, "kiln-agent: healthy version=1.0.0", "unhealthy")
	// The new root comes as a delta against the running one (a few MiB for a 100 MiB root).
	con.expect(ctx, "kiln-agent: applied root delta", "kiln-agent: error")
	con.expect(ctx, "kiln-agent: root written and read back", "kiln-agent: error")
	con.expect(ctx, "kiln-agent: installed", "kiln-agent: error")
	con.expect(ctx, "kiln: ready name=garden version=1.1.0")
	con.expect(ctx, "kiln-agent: healthy version=1.1.0", "unhealthy")
	waitDevice(ctx, t, srv, "1.1.0 healthy", func(d ota.DeviceStatus) bool {
		return d.Version == "1.1.0" && d.State == ota.StateHealthy
	})

	publish(t, dir, keys, v120)
	con.expect(ctx, "kiln-agent: root written and read back", "kiln-agent: error")
	con.expect(ctx, "kiln-agent: installed", "kiln-agent: error")
	for try := 1; try <= 3; try++ {
		con.expect(ctx, "kiln: ready name=garden version=1.2.0")
		con.expect(ctx, "kiln-agent: warning: unhealthy")
	}
	con.expect(ctx, "kiln: ready name=garden version=1.1.0")
	con.expect(ctx, "kiln-agent: warning: rolled-back from=1.2.0 version=1.1.0")
	waitDevice(ctx, t, srv, "the rollback", func(d ota.DeviceStatus) bool {
		return d.Version == "1.1.0" && d.State == ota.StateRolledBack && d.Target == "1.2.0"
	})
	// On the serial console's root shell (the typed line does not match what it prints): 1.1.0 runs on its own root, from the slot it was
	// installed in, with the package it added and without 1.2.0's.
	fmt.Fprintf(con.vm.SerialInput(), "\necho \"chec\"\"k: slot=$(cat %s) tree=$(command -v tree) jq=$(command -v jq) ro=$(touch /usr/x 2>/dev/null && echo no || echo yes)\"\n", ota.RunningRootFile)
	line := con.expect(ctx, "check: slot=")
	if !strings.Contains(line, "check: slot="+ota.RootSlotB+" tree=/usr/bin/tree jq= ro=yes") {
		t.Errorf("after the rollback the console says %q, want 1.1.0's root from %s, read-only", line, ota.RootSlotB)
	}
	hist, err := srv.History(ctx, device(t, srv).ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	rolledBack := false
	for _, e := range hist {
		rolledBack = rolledBack || e.State == ota.StateRolledBack && e.Target == "1.2.0"
	}
	if !rolledBack {
		t.Errorf("history has no rollback of 1.2.0: %+v", hist)
	}
}
