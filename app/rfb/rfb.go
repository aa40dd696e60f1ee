// Package rfb is a small VNC (RFB 3.8, RFC 6143) client for QEMU's display socket: no authentication,
// 32-bit true colour, Raw and CopyRect encodings and the DesktopSize pseudo-encoding. It keeps the
// framebuffer as an image.RGBA and sends key and pointer events; it has no GUI dependency.
package rfb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"sync"
)

const (
	encRaw         = 0
	encCopyRect    = 1
	encDesktopSize = -223
)

// ErrUnsupported is returned when the server offers no security type this client speaks.
var ErrUnsupported = errors.New("rfb: server requires authentication this client does not support")

// Limits on what a server may make the client allocate.
const (
	// MaxPixels bounds the framebuffer: 8K UHD (7680x4320) fits, 128 MiB at 4 bytes a pixel.
	MaxPixels = 1 << 25
	// maxName bounds the desktop name and the reasons a server gives.
	maxName = 64 << 10
)

// Client is a connection to a VNC server.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex // serialises client messages
	Name string     // desktop name from ServerInit

	mu sync.Mutex
	fb *image.RGBA

	// OnUpdate, when set before Run, is called (from Run's goroutine) after each framebuffer update.
	OnUpdate func()
}

// Dial connects to the unix socket at path and performs the handshake.
func Dial(path string) (*Client, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("vnc %s: connect: %w", path, err)
	}
	c, err := NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("vnc %s: %w", path, err)
	}
	return c, nil
}

// NewClient performs the RFB handshake over conn.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 1<<16)}
	var ver [12]byte
	if _, err := io.ReadFull(c.r, ver[:]); err != nil {
		return nil, fmt.Errorf("read protocol version: %w", err)
	}
	if string(ver[:4]) != "RFB " {
		return nil, fmt.Errorf("not an RFB server (greeting %q)", ver[:])
	}
	if _, err := conn.Write([]byte("RFB 003.008\n")); err != nil {
		return nil, fmt.Errorf("send protocol version: %w", err)
	}
	var n uint8
	if err := binary.Read(c.r, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("read security types: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("server refused the connection: %s", c.readString())
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(c.r, types); err != nil {
		return nil, fmt.Errorf("read security types: %w", err)
	}
	none := false
	for _, t := range types {
		none = none || t == 1
	}
	if !none {
		return nil, ErrUnsupported
	}
	if _, err := conn.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("choose security type: %w", err)
	}
	var result uint32
	if err := binary.Read(c.r, binary.BigEndian, &result); err != nil {
		return nil, fmt.Errorf("read security result: %w", err)
	}
	if result != 0 {
		return nil, fmt.Errorf("security handshake failed: %s", c.readString())
	}
	if _, err := conn.Write([]byte{1}); err != nil { // ClientInit: shared
		return nil, fmt.Errorf("send client init: %w", err)
	}
	var init struct {
		W, H uint16
		PF   [16]byte
		N    uint32
	}
	if err := binary.Read(c.r, binary.BigEndian, &init); err != nil {
		return nil, fmt.Errorf("read server init: %w", err)
	}
	if init.N > maxName {
		return nil, fmt.Errorf("server init: desktop name of %d bytes (at most %d)", init.N, maxName)
	}
	name := make([]byte, init.N)
	if _, err := io.ReadFull(c.r, name); err != nil {
		return nil, fmt.Errorf("read desktop name: %w", err)
	}
	c.Name = string(name)
	fb, err := newFramebuffer(init.W, init.H)
	if err != nil {
		return nil, fmt.Errorf("server init: %w", err)
	}
	c.fb = fb

	// 32 bpp, depth 24, little endian, true colour, 8 bits per channel: pixel bytes B G R x.
	pf := []byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
	enc := []byte{2, 0, 0, 3}
	for _, e := range []int32{encRaw, encCopyRect, encDesktopSize} {
		enc = binary.BigEndian.AppendUint32(enc, uint32(e))
	}
	if err := c.send(append(pf, enc...)); err != nil {
		return nil, err
	}
	return c, c.Request(false)
}

// newFramebuffer allocates a w×h screen, refusing one over MaxPixels.
func newFramebuffer(w, h uint16) (*image.RGBA, error) {
	if int(w)*int(h) > MaxPixels {
		return nil, fmt.Errorf("a %dx%d screen is over the %d-pixel limit", w, h, MaxPixels)
	}
	return image.NewRGBA(image.Rect(0, 0, int(w), int(h))), nil
}

func (c *Client) readString() string {
	var n uint32
	if binary.Read(c.r, binary.BigEndian, &n) != nil || n > maxName {
		return "(no reason given)"
	}
	b := make([]byte, n)
	io.ReadFull(c.r, b)
	return string(b)
}

func (c *Client) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("vnc send: %w", err)
	}
	return nil
}

// Request asks for a framebuffer update of the whole screen.
func (c *Client) Request(incremental bool) error {
	c.mu.Lock()
	w, h := c.fb.Rect.Dx(), c.fb.Rect.Dy()
	c.mu.Unlock()
	b := []byte{3, 0}
	if incremental {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(w))
	b = binary.BigEndian.AppendUint16(b, uint16(h))
	return c.send(b)
}

// Key sends a key press or release; keysym is an X11 keysym (Latin-1 characters are their code).
func (c *Client) Key(keysym uint32, down bool) error {
	b := []byte{4, 0, 0, 0}
	if down {
		b[1] = 1
	}
	return c.send(binary.BigEndian.AppendUint32(b, keysym))
}

// Pointer sends the pointer position and the pressed buttons (bit 0 left, 1 middle, 2 right,
// 3/4 wheel up/down).
func (c *Client) Pointer(x, y int, buttons uint8) error {
	b := []byte{5, buttons}
	b = binary.BigEndian.AppendUint16(b, uint16(max(x, 0)))
	return c.send(binary.BigEndian.AppendUint16(b, uint16(max(y, 0))))
}

// Size returns the framebuffer size.
func (c *Client) Size() image.Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fb.Rect.Size()
}

// Snapshot copies the framebuffer into dst (reallocated when the size changed) and returns it.
func (c *Client) Snapshot(dst *image.RGBA) *image.RGBA {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dst == nil || dst.Rect != c.fb.Rect {
		dst = image.NewRGBA(c.fb.Rect)
	}
	copy(dst.Pix, c.fb.Pix)
	return dst
}

// Close ends the connection; Run then returns.
func (c *Client) Close() error { return c.conn.Close() }

// Run reads server messages and keeps the framebuffer current, requesting incremental updates,
// until the connection ends.
func (c *Client) Run() error {
	for {
		t, err := c.r.ReadByte()
		if err != nil {
			return eofOK(err)
		}
		switch t {
		case 0:
			if err := c.update(); err != nil {
				return err
			}
			if c.OnUpdate != nil {
				c.OnUpdate()
			}
			if err := c.Request(true); err != nil {
				return err
			}
		case 1: // SetColourMapEntries: not used in true colour
			var h struct {
				Pad          uint8
				First, Count uint16
			}
			if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
				return eofOK(err)
			}
			if _, err := c.r.Discard(int(h.Count) * 6); err != nil {
				return eofOK(err)
			}
		case 2: // Bell
		case 3: // ServerCutText: skipped, however long
			var h struct {
				Pad [3]byte
				N   uint32
			}
			if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
				return eofOK(err)
			}
			if _, err := io.CopyN(io.Discard, c.r, int64(h.N)); err != nil {
				return eofOK(err)
			}
		default:
			return fmt.Errorf("vnc: unknown server message type %d", t)
		}
	}
}

func eofOK(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("vnc read: %w", err)
}

func (c *Client) update() error {
	var h struct {
		Pad   uint8
		Rects uint16
	}
	if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
		return eofOK(err)
	}
	for range int(h.Rects) {
		var r struct {
			X, Y, W, H uint16
			Enc        int32
		}
		if err := binary.Read(c.r, binary.BigEndian, &r); err != nil {
			return eofOK(err)
		}
		rect := image.Rect(int(r.X), int(r.Y), int(r.X)+int(r.W), int(r.Y)+int(r.H))
		switch r.Enc {
		case encRaw:
			if err := c.raw(rect); err != nil {
				return err
			}
		case encCopyRect:
			var src struct{ X, Y uint16 }
			if err := binary.Read(c.r, binary.BigEndian, &src); err != nil {
				return eofOK(err)
			}
			c.mu.Lock()
			from := c.fb.SubImage(rect.Sub(rect.Min).Add(image.Pt(int(src.X), int(src.Y)))).(*image.RGBA)
			tmp := image.NewRGBA(from.Rect)
			copy2(tmp, from)
			copy2(c.fb.SubImage(rect).(*image.RGBA), tmp)
			c.mu.Unlock()
		case encDesktopSize:
			fb, err := newFramebuffer(r.W, r.H)
			if err != nil {
				return fmt.Errorf("vnc: desktop size: %w", err)
			}
			c.mu.Lock()
			c.fb = fb
			c.mu.Unlock()
		default:
			return fmt.Errorf("vnc: server sent encoding %d that was not asked for", r.Enc)
		}
	}
	return nil
}

// raw reads a Raw rectangle (B G R x per pixel) into the framebuffer; the part of it outside the
// screen is read and dropped.
func (c *Client) raw(rect image.Rectangle) error {
	row := make([]byte, rect.Dx()*4)
	for y := rect.Min.Y; y < rect.Max.Y; y++ {
		if _, err := io.ReadFull(c.r, row); err != nil {
			return eofOK(err)
		}
		c.mu.Lock()
		if vis := rect.Intersect(c.fb.Rect); y >= vis.Min.Y && y < vis.Max.Y {
			src := row[(vis.Min.X-rect.Min.X)*4 : (vis.Max.X-rect.Min.X)*4]
			pix := c.fb.Pix[c.fb.PixOffset(vis.Min.X, y):][:len(src)]
			for i := 0; i < len(src); i += 4 {
				pix[i], pix[i+1], pix[i+2], pix[i+3] = src[i+2], src[i+1], src[i], 0xff
			}
		}
		c.mu.Unlock()
	}
	return nil
}

// copy2 copies src onto dst, both of the same size, row by row.
func copy2(dst, src *image.RGBA) {
	w := min(dst.Rect.Dx(), src.Rect.Dx()) * 4
	for y := 0; y < min(dst.Rect.Dy(), src.Rect.Dy()); y++ {
		d := dst.PixOffset(dst.Rect.Min.X, dst.Rect.Min.Y+y)
		s := src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y)
		copy(dst.Pix[d:d+w], src.Pix[s:s+w])
	}
}
