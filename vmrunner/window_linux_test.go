package vmrunner

import (
	"context"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// The window display opens on an X server (QEMU's GTK or SDL front end) and the guest boots.
func TestWindowDisplayBoots(t *testing.T) {
	qemu := needQEMU(t)
	t.Setenv("DISPLAY", testenv.Xvfb(t, "1280x1024x24"))
	t.Setenv("WAYLAND_DISPLAY", "")
	if _, err := windowBackend(context.Background(), qemu); err != nil {
		testenv.Missing(t, "%v", err)
	}
	cfg := Config{Image: writeMBRImage(t, "tiny.img"), Accel: AccelTCG, Display: DisplayWindow, MemoryMiB: 128, Log: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	if !hasSeq(vm.Info().Args, "-display", "gtk") && !hasSeq(vm.Info().Args, "-display", "sdl") {
		t.Errorf("no window display in %q", vm.Info().Args)
	}
	waitFor(t, vm, mbrMarker)
}
