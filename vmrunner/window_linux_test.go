package vmrunner

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

// xvfb starts a private X server and returns its DISPLAY value.
func xvfb(t *testing.T) string {
	t.Helper()
	bin := need(t, "Xvfb")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-displayfd", "3", "-screen", "0", "1280x1024x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	prepareCommand(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		killProcess(cmd)
		cmd.Wait()
	})
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if n == "" {
			t.Fatal("Xvfb did not report a display")
		}
		return ":" + n
	case <-time.After(30 * time.Second):
		t.Fatal("Xvfb did not start")
	}
	return ""
}

// The window display opens on an X server (QEMU's GTK or SDL front end) and the guest boots.
func TestWindowDisplayBoots(t *testing.T) {
	qemu := needQEMU(t)
	t.Setenv("DISPLAY", xvfb(t))
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
