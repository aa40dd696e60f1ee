package vmrunner_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"

	"github.com/kilnproject/kiln/internal/testenv"
)

const readyLine = testimage.DefaultReadyLine

func requireQEMUAndOVMF(t *testing.T) {
	t.Helper()
	missing := func(err error) {
		testenv.Missing(t, "%v", err)
	}
	if _, err := vmrunner.FindQEMU(""); err != nil {
		missing(err)
	}
	if _, err := vmrunner.FindUEFI(nil, ""); err != nil {
		missing(err)
	}
}

// The default image boots under UEFI through `kiln preview --expect`, and stays byte-identical
// although its init mounts the data partition read-write.
func TestKilnImageBootsUnderUEFI(t *testing.T) {
	requireQEMUAndOVMF(t)
	kiln := os.Getenv("KILN_BIN")
	if kiln == "" {
		testimage.Missing(t, "KILN_BIN not set: run through make test, or set it to a built kiln binary")
	}
	res := testimage.Build(t, "")
	before := testimage.SHA256(t, res.Image)
	cmd := exec.Command(kiln, "preview", "--headless", "--accel", "tcg", "--memory", "1024",
		"--expect", readyLine, "--timeout", "5m", "--json", res.Image)
	out, err := cmd.CombinedOutput()
	t.Logf("kiln preview:\n%s", out)
	if err != nil {
		t.Fatalf("kiln preview --expect %q: %v", readyLine, err)
	}
	if !strings.Contains(string(out), `"firmware":"uefi"`) || !strings.Contains(string(out), `"found":true`) {
		t.Errorf("result does not report a UEFI boot that found the ready line")
	}
	if after := testimage.SHA256(t, res.Image); after != before {
		t.Fatalf("image sha256 changed from %s to %s", before, after)
	}
}

func TestPowerdownEndsQEMU(t *testing.T) {
	requireQEMUAndOVMF(t)
	res := testimage.Build(t, "") // Kiln Tiny: busybox acpid turns the power button into poweroff
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vm, err := vmrunner.Start(ctx, vmrunner.Config{Image: res.Image, Accel: vmrunner.AccelTCG,
		Display: vmrunner.DisplayNone, MemoryMiB: 1024, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	if vm.Info().Firmware != vmrunner.FirmwareUEFI {
		t.Errorf("firmware = %s, want uefi for an image with an EFI system partition", vm.Info().Firmware)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if err := vm.WaitFor(wctx, readyLine); err != nil {
		var ee *vmrunner.ExpectError
		errors.As(err, &ee)
		t.Fatalf("%v\n%s", err, strings.Join(ee.Tail, "\n"))
	}
	img, err := vm.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("UEFI screen: %dx%d", img.Bounds().Dx(), img.Bounds().Dy())
	events := vm.Events()
	start := time.Now()
	if err := vm.Powerdown(ctx, 2*time.Minute); err != nil {
		t.Fatalf("Powerdown: %v\nlast console lines:\n%s", err, strings.Join(vm.Tail(20), "\n"))
	}
	t.Logf("guest powered off %s after the power button", time.Since(start).Round(time.Millisecond))
	if err := vm.Wait(); err != nil {
		t.Errorf("Wait = %v, want a clean exit", err)
	}
	var names []string
	for ev := range events {
		names = append(names, ev.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "SHUTDOWN") {
		t.Errorf("events %v, want a SHUTDOWN event", names)
	}
}

// An image for the arm64-uefi board boots on QEMU's virt machine under AAVMF (TCG on an x86 host)
// to its ready line with the recipe's hostname.
func TestArm64ImageBootsOnVirt(t *testing.T) {
	virt := vmrunner.Machines["virt"]
	if _, err := vmrunner.FindQEMUFor("", virt); err != nil {
		testenv.Missing(t, "%v", err)
	}
	if _, err := vmrunner.FindUEFIFor(nil, "", virt); err != nil {
		testenv.Missing(t, "%v", err)
	}
	res := testimage.Build(t, "kiln = 1\nname = \"tiny-arm\"\nversion = \"1.0.0\"\n[board]\nname = \"arm64-uefi\"\n[system]\nhostname = \"armhost\"\n")
	before := testimage.SHA256(t, res.Image)
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	vm, err := vmrunner.Start(ctx, vmrunner.Config{Image: res.Image, Machine: "virt", Display: vmrunner.DisplayNone,
		MemoryMiB: 1024, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	info := vm.Info()
	if info.Firmware != vmrunner.FirmwareUEFI || !strings.Contains(info.QEMU, "aarch64") || info.Accel.Accel != vmrunner.AccelTCG {
		t.Errorf("firmware %s, qemu %s, accel %s", info.Firmware, info.QEMU, info.Accel)
	}
	wctx, wcancel := context.WithTimeout(ctx, 4*time.Minute)
	defer wcancel()
	if err := vm.WaitFor(wctx, "kiln: ready name=tiny-arm version=1.0.0 hostname=armhost"); err != nil {
		var ee *vmrunner.ExpectError
		errors.As(err, &ee)
		t.Fatalf("%v\n%s", err, strings.Join(ee.Tail, "\n"))
	}
	t.Logf("arm64-uefi image ready %s after start (AAVMF, TCG)", time.Since(start).Round(100*time.Millisecond))
	if img, err := vm.Screenshot(ctx); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screen %dx%d", img.Bounds().Dx(), img.Bounds().Dy())
	}
	vm.Stop()
	if after := testimage.SHA256(t, res.Image); after != before {
		t.Fatalf("image sha256 changed from %s to %s", before, after)
	}
}
