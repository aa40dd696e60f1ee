package assembler_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

// guest is a virtual machine booted from an image through vmrunner (QEMU, q35, OVMF, virtio disk,
// -snapshot, TCG), with its serial console captured for expect-style matching.
type guest struct {
	t  *testing.T
	vm *vmrunner.VM

	mu     sync.Mutex
	cond   *sync.Cond
	out    bytes.Buffer // everything the serial console printed
	mark   int          // expect searches from here
	closed bool
	start  time.Time
}

// boot starts the image in QEMU under TCG (the host's KVM is not usable for tests here). The VM is
// stopped at the end of the test.
func boot(t *testing.T, image string) *guest {
	t.Helper()
	return bootVM(t, vmrunner.Config{Image: image, Firmware: vmrunner.FirmwareUEFI})
}

// bootVM boots cfg (its image, firmware and attachment) like boot does.
func bootVM(t *testing.T, cfg vmrunner.Config) *guest {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testimage.Missing(t, "qemu-system-x86_64 not installed (apt-get install qemu-system-x86 ovmf)")
	}
	g := &guest{t: t, start: time.Now()}
	g.cond = sync.NewCond(&g.mu)
	cfg.Accel, cfg.Display = vmrunner.AccelTCG, vmrunner.DisplayNone
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	vm, err := vmrunner.Start(t.Context(), cfg)
	if errors.Is(err, vmrunner.ErrNoUEFIFirmware) {
		testimage.Missing(t, "no UEFI firmware: "+err.Error())
	}
	if err != nil {
		t.Fatalf("boot %s: %v", cfg.Image, err)
	}
	g.vm = vm
	serial := vm.Serial()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := serial.Read(buf)
			g.mu.Lock()
			g.out.Write(buf[:n])
			if err != nil {
				g.closed = true
			}
			g.cond.Broadcast()
			g.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		vm.Stop()
		serial.Close()
		if t.Failed() {
			g.mu.Lock()
			t.Logf("serial console:\n%s", g.out.String())
			g.mu.Unlock()
		}
	})
	return g
}

// expect waits until the console prints a match of re after the previous match and returns the
// match and its groups.
func (g *guest) expect(re *regexp.Regexp, timeout time.Duration) []string {
	g.t.Helper()
	var out []string
	matched := g.wait(timeout, func() bool {
		rest := g.out.Bytes()[g.mark:]
		m := re.FindSubmatchIndex(rest)
		if m == nil {
			if g.closed {
				g.t.Fatalf("the VM stopped before the console printed %q", re)
			}
			return false
		}
		for i := 0; i < len(m); i += 2 {
			if m[i] >= 0 {
				out = append(out, string(rest[m[i]:m[i+1]]))
			} else {
				out = append(out, "")
			}
		}
		g.mark += m[1]
		return true
	})
	if !matched {
		g.t.Fatalf("the console did not print %q within %s", re, timeout)
	}
	return out
}

// wait calls done, with g.mu held, each time the console changes until it returns true; false
// when timeout passes first.
func (g *guest) wait(timeout time.Duration, done func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for !done() {
		if ctx.Err() != nil {
			return false
		}
		g.cond.Wait()
	}
	return true
}

// send types s on the serial console.
func (g *guest) send(s string) {
	g.t.Helper()
	if _, err := io.WriteString(g.vm.SerialInput(), s); err != nil {
		g.t.Fatalf("serial console: %v", err)
	}
}

// waitStopped waits until the VM exits by itself (a guest that reboots under -no-reboot).
func (g *guest) waitStopped(timeout time.Duration) {
	g.t.Helper()
	if !g.wait(timeout, func() bool { return g.closed }) {
		g.t.Fatalf("the VM did not stop within %s", timeout)
	}
}
