package assembler_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testimage"
)

// guest is a QEMU virtual machine booted from an image, with its serial console on a pipe.
type guest struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	cond   *sync.Cond
	out    bytes.Buffer // everything the serial console printed
	mark   int          // expect searches from here
	exited bool
}

// boot starts QEMU (q35, TCG, OVMF, virtio disk, -snapshot) on image. The VM is killed at the end of
// the test.
func boot(t *testing.T, image string) *guest {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testimage.Missing(t, "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	code, vars := "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	if _, err := os.Stat(code); err != nil {
		testimage.Missing(t, "OVMF not installed (apt-get install ovmf)")
	}
	varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	data, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(varsCopy, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t}
	g.cond = sync.NewCond(&g.mu)
	g.cmd = exec.Command(qemu, "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy,
		"-drive", "if=virtio,format=raw,file="+image, "-snapshot",
		"-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0")
	g.stdin, err = g.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	g.cmd.Stderr = &stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			g.mu.Lock()
			g.out.Write(buf[:n])
			if err != nil {
				g.exited = true
			}
			g.cond.Broadcast()
			g.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		g.cmd.Wait()
		if t.Failed() {
			g.mu.Lock()
			t.Logf("serial console:\n%s\nqemu stderr:\n%s", g.out.String(), stderr.String())
			g.mu.Unlock()
		}
	})
	return g
}

// expect waits until the console prints a match of re after the previous match and returns it.
func (g *guest) expect(re *regexp.Regexp, timeout time.Duration) []string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		rest := g.out.Bytes()[g.mark:]
		if loc := re.FindSubmatchIndex(rest); loc != nil {
			var m []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] >= 0 {
					m = append(m, string(rest[loc[i]:loc[i+1]]))
				} else {
					m = append(m, "")
				}
			}
			g.mark += loc[1]
			return m
		}
		if g.exited {
			g.t.Fatalf("qemu exited before the console printed %q", re)
		}
		if ctx.Err() != nil {
			g.t.Fatalf("the console did not print %q within %s", re, timeout)
		}
		g.cond.Wait()
	}
}

// send types s on the serial console.
func (g *guest) send(s string) {
	g.t.Helper()
	if _, err := io.WriteString(g.stdin, s); err != nil {
		g.t.Fatalf("serial console: %v", err)
	}
}
