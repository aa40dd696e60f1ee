package rfb

import (
	"encoding/binary"
	"image/color"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

// fakeServer speaks the server side of RFB 3.8 over conn: a 4x2 screen, one Raw update, then it
// records the client's key events.
func fakeServer(t *testing.T, conn net.Conn, keys chan<- uint32) {
	defer conn.Close()
	w := func(b []byte) { conn.Write(b) }
	w([]byte("RFB 003.008\n"))
	ver := make([]byte, 12)
	io.ReadFull(conn, ver)
	w([]byte{1, 1}) // one security type: None
	sec := make([]byte, 1)
	io.ReadFull(conn, sec)
	w([]byte{0, 0, 0, 0})
	io.ReadFull(conn, sec) // ClientInit
	init := []byte{0, 4, 0, 2}
	init = append(init, make([]byte, 16)...)
	init = binary.BigEndian.AppendUint32(init, 4)
	w(append(init, "test"...))
	for {
		var t [1]byte
		if _, err := io.ReadFull(conn, t[:]); err != nil {
			return
		}
		switch t[0] {
		case 0: // SetPixelFormat
			io.ReadFull(conn, make([]byte, 19))
		case 2: // SetEncodings
			var h [3]byte
			io.ReadFull(conn, h[:])
			io.ReadFull(conn, make([]byte, 4*int(binary.BigEndian.Uint16(h[1:]))))
		case 3: // FramebufferUpdateRequest
			var req [9]byte
			io.ReadFull(conn, req[:])
			if req[0] == 0 { // full update: one red pixel at (1,1) in a Raw rect covering the screen
				msg := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 0}
				pix := make([]byte, 4*2*4)
				copy(pix[(1*4+1)*4:], []byte{0, 0, 0xff, 0}) // B G R x
				w(append(msg, pix...))
			}
		case 4: // KeyEvent
			var k [7]byte
			io.ReadFull(conn, k[:])
			if k[0] == 1 {
				keys <- binary.BigEndian.Uint32(k[3:])
			}
		case 5:
			io.ReadFull(conn, make([]byte, 5))
		}
	}
}

func TestHandshakeRawUpdateAndKeys(t *testing.T) {
	cs, ss := net.Pipe()
	keys := make(chan uint32, 4)
	go fakeServer(t, ss, keys)
	c, err := NewClient(cs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Name != "test" || c.Size().X != 4 || c.Size().Y != 2 {
		t.Fatalf("name %q size %v", c.Name, c.Size())
	}
	updated := make(chan struct{}, 1)
	c.OnUpdate = func() {
		select {
		case updated <- struct{}{}:
		default:
		}
	}
	go c.Run()
	<-updated
	img := c.Snapshot(nil)
	if got := img.RGBAAt(1, 1); got != (color.RGBA{0xff, 0, 0, 0xff}) {
		t.Errorf("pixel (1,1) = %v, want red", got)
	}
	if got := img.RGBAAt(0, 0); got != (color.RGBA{0, 0, 0, 0xff}) {
		t.Errorf("pixel (0,0) = %v, want black", got)
	}
	c.Key('a', true)
	if k := <-keys; k != 'a' {
		t.Errorf("server got keysym %#x", k)
	}
}

// Against QEMU's own VNC server on a unix socket: the SeaBIOS screen of a VM without a disk
// appears in the framebuffer.
func TestQEMUDisplay(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Missing(t, "qemu-system-x86_64 not installed")
	}
	dir, err := os.MkdirTemp("", "rfb") // short path: unix socket names are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "vnc.sock")
	cmd := exec.Command(qemu, "-accel", "tcg", "-cpu", "max", "-m", "64", "-nodefaults", "-vga", "std",
		"-display", "none", "-vnc", "unix:"+sock, "-no-reboot", "-serial", "none", "-monitor", "none")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cmd.Process.Kill(); <-done }()
	var c *Client
	for range 200 {
		if c, err = Dial(sock); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatal("QEMU exited")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if c == nil {
		t.Fatalf("no VNC socket: %v", err)
	}
	defer c.Close()
	go c.Run()
	// SeaBIOS prints its banner within seconds even under TCG on a busy machine; poll for it.
	for range 600 {
		img := c.Snapshot(nil)
		lit := 0
		for i := 0; i < len(img.Pix); i += 4 {
			if img.Pix[i]|img.Pix[i+1]|img.Pix[i+2] != 0 {
				lit++
			}
		}
		if lit > 100 {
			t.Logf("screen %v, %d lit pixels", img.Rect.Size(), lit)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the guest screen stayed black for 120 s")
}
