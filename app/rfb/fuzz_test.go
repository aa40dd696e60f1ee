package rfb

import (
	"bytes"
	"encoding/binary"
	"image/color"
	"io"
	"net"
	"strings"
	"testing"
)

// handshake is a server's side of RFB 3.8 up to ServerInit: version, security None, a w×h
// screen named name.
func handshake(w, h uint16, nameLen uint32, name string) []byte {
	b := []byte("RFB 003.008\n")
	b = append(b, 1, 1)       // one security type: None
	b = append(b, 0, 0, 0, 0) // security result: OK
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = append(b, make([]byte, 16)...) // pixel format (the client sets its own)
	b = binary.BigEndian.AppendUint32(b, nameLen)
	return append(b, name...)
}

// rect is a FramebufferUpdate rectangle header.
func rect(x, y, w, h uint16, enc int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, x)
	b = binary.BigEndian.AppendUint16(b, y)
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	return binary.BigEndian.AppendUint32(b, uint32(enc))
}

// update is a FramebufferUpdate message holding n rectangles (their headers and data in body).
func update(n uint16, body ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16([]byte{0, 0}, n)
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

// streamConn is a server that sends a fixed stream, then hangs up; what the client writes is dropped.
type streamConn struct {
	net.Conn // nil: only the methods below are used
	r        io.Reader
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *streamConn) Close() error                { return nil }

// replay connects a client to a server that sends stream.
func replay(stream []byte) (*Client, error) {
	return NewClient(&streamConn{r: bytes.NewReader(stream)})
}

// A rectangle that lies about where it is — beyond the screen or across its edge — is read and
// clipped, never written outside the framebuffer.
func TestRectangleOutsideTheScreenIsClipped(t *testing.T) {
	red := []byte{0, 0, 0xff, 0} // B G R x
	stream := append(handshake(4, 2, 0, ""), update(3,
		rect(10, 0, 2, 1, encRaw), red, red, // wholly to the right
		rect(3, 1, 2, 1, encRaw), red, red, // across the right edge: (3,1) visible
		rect(0, 5, 1, 1, encRaw), red, // below
	)...)
	c, err := replay(stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	img := c.Snapshot(nil)
	if got := img.RGBAAt(3, 1); got != (color.RGBA{0xff, 0, 0, 0xff}) {
		t.Errorf("pixel (3,1) = %v, want red", got)
	}
	if got := img.RGBAAt(0, 0); got != (color.RGBA{}) {
		t.Errorf("pixel (0,0) = %v, want untouched", got)
	}
}

// The server cannot make the client allocate a screen or a name of any size it likes.
func TestServerSizesAreCapped(t *testing.T) {
	if _, err := replay(handshake(4, 2, 100<<20, "x")); err == nil || !strings.Contains(err.Error(), "desktop name of") {
		t.Errorf("a 100 MiB desktop name: err = %v, want it refused before reading", err)
	}
	if _, err := replay(handshake(10000, 10000, 0, "")); err == nil || !strings.Contains(err.Error(), "pixel limit") {
		t.Errorf("a 10000x10000 screen at init: err = %v, want it refused", err)
	}
	c, err := replay(append(handshake(4, 2, 0, ""), update(1, rect(0, 0, 10000, 10000, encDesktopSize))...))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(); err == nil || !strings.Contains(err.Error(), "pixel limit") {
		t.Errorf("a desktop resize to 10000x10000: Run = %v, want it refused", err)
	}
	if got := c.Size(); got.X != 4 || got.Y != 2 {
		t.Errorf("size after a refused resize = %v, want 4x2", got)
	}
}

// Clipboard text from the server is skipped whatever its length; the messages after it still count.
func TestLongServerCutTextIsSkipped(t *testing.T) {
	cut := binary.BigEndian.AppendUint32([]byte{3, 0, 0, 0}, 100<<10)
	cut = append(cut, bytes.Repeat([]byte("x"), 100<<10)...) // not a message, if read as one
	stream := append(handshake(1, 1, 0, ""), cut...)
	stream = append(stream, update(1, rect(0, 0, 1, 1, encRaw), []byte{0xff, 0, 0, 0})...)
	c, err := replay(stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := c.Snapshot(nil).RGBAAt(0, 0); got != (color.RGBA{0, 0, 0xff, 0xff}) {
		t.Errorf("pixel after the clipboard text = %v, want blue", got)
	}
}

// Whatever a VNC server sends, the client neither panics nor reads past the stream nor allocates a
// framebuffer over MaxPixels, and its framebuffer stays consistent with its size.
func FuzzRFBServer(f *testing.F) {
	red := []byte{0, 0, 0xff, 0}
	hs := handshake(4, 2, 4, "test")
	f.Add(hs)
	f.Add(append(hs, update(2, rect(1, 1, 1, 1, encRaw), red, rect(0, 0, 2, 1, encCopyRect), []byte{0, 1, 0, 1})...))
	f.Add(append(hs, update(1, rect(0, 0, 640, 480, encDesktopSize))...))
	f.Add(append(hs, update(1, rect(65535, 65535, 65535, 65535, encCopyRect), []byte{0xff, 0xff, 0xff, 0xff})...))
	f.Add(append(hs, 1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 2, 3, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'))
	f.Add([]byte("RFB 003.008\n\x00\x00\x00\x00\x05hello"))
	f.Add([]byte("RFB 003.003\n\x01\x02"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, err := replay(stream)
		if err != nil {
			return
		}
		c.Run() // returns at the end of the stream at the latest
		size := c.Size()
		if size.X*size.Y > MaxPixels {
			t.Fatalf("framebuffer %v is over MaxPixels", size)
		}
		if img := c.Snapshot(nil); len(img.Pix) != size.X*size.Y*4 {
			t.Fatalf("snapshot of %d bytes for a %v screen", len(img.Pix), size)
		}
	})
}
