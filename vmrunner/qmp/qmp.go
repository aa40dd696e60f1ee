// Package qmp is a small client for the QEMU Machine Protocol: commands with typed results,
// asynchronous events, and the few commands a preview needs (status, power button, quit,
// screendump).
package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// ErrClosed is returned for commands on a connection that has ended (QEMU exited or Close was called).
var ErrClosed = errors.New("qmp: connection closed")

// Error is an error reply from QEMU.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// Event is an asynchronous QMP event such as SHUTDOWN, RESET, STOP or RESUME.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"-"`
}

// Status is the result of query-status. Status is e.g. "running", "paused", "shutdown",
// "internal-error", "guest-panicked" or "prelaunch".
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

type message struct {
	QMP       json.RawMessage `json:"QMP"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

// Client is a QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn   net.Conn
	events chan Event

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	pending map[string]chan message
	nextID  int
	err     error // set when the reader ends
	done    chan struct{}
}

// Dial connects to a QMP unix socket, reads the greeting and leaves capabilities negotiation mode.
// It retries until the socket accepts connections or ctx ends (QEMU creates it while starting).
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil {
			return NewClient(ctx, conn)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w (last error: %v)", socket, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// MaxMessage bounds one QMP message (a line of JSON). QEMU's largest reply, that of
// query-qmp-schema, is a few hundred KiB; a longer line ends the connection instead of
// growing without limit.
const MaxMessage = 4 << 20

// ErrTooLong reports a QMP message longer than MaxMessage.
var ErrTooLong = errors.New("qmp: message longer than 4 MiB")

// NewClient runs the QMP handshake on conn and starts reading replies and events. Events are
// buffered (256); when nobody reads them the oldest are dropped. Cancelling ctx (or its
// deadline) aborts a handshake the other side does not answer.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, events: make(chan Event, 256), pending: map[string]chan message{}, done: make(chan struct{})}
	r := bufio.NewReaderSize(conn, 64<<10)
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	greeting, err := readMessage(r)
	if !stop() { // ctx ended and cut the read short
		err = ctx.Err()
	} else if err == nil && greeting.QMP == nil {
		err = errors.New("no QMP greeting")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: handshake: %w", err)
	}
	go c.read(r)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// readMessage reads the next QMP message: one line of JSON (blank lines are skipped), at most
// MaxMessage bytes. Whatever the input, it returns a message or an error and never buffers more
// than MaxMessage.
func readMessage(r *bufio.Reader) (message, error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return message{}, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			return message{}, fmt.Errorf("qmp: malformed message: %w", err)
		}
		return m, nil
	}
}

// readLine returns the next line (with its newline) of at most MaxMessage bytes; a last line
// without a newline is an error, as the connection ended in the middle of a message.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxMessage {
			return nil, ErrTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(bytes.TrimSpace(line)) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func (c *Client) read(r *bufio.Reader) {
	var err error
	for {
		var m message
		if m, err = readMessage(r); err != nil {
			break
		}
		if m.Event != "" {
			ev := Event{Name: m.Event, Data: m.Data, Time: time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)}
			for {
				select {
				case c.events <- ev:
				default:
					select { // full: drop the oldest event and retry
					case <-c.events:
					default:
					}
					continue
				}
				break
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", ErrClosed, err)
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
	close(c.events)
}

// Events returns the channel of asynchronous events; it is closed when the connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Execute runs a command with optional arguments and decodes its "return" value into result (if non-nil).
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	c.nextID++
	id := strconv.Itoa(c.nextID)
	ch := make(chan message, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: encode: %w", command, err)
	}
	c.wmu.Lock()
	_, err = c.conn.Write(append(data, '\n'))
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp %s: send: %w", command, err)
	}
	select {
	case m, ok := <-ch:
		if !ok { // the reader ended: say why
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return fmt.Errorf("qmp %s: %w", command, err)
		}
		if m.Error != nil {
			m.Error.Command = command
			return m.Error
		}
		if result != nil {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qmp %s: decode reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Status runs query-status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Cont resumes a VM started with -S or stopped.
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// SystemPowerdown presses the ACPI power button; the guest decides whether to shut down.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// SystemReset resets the machine.
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// Quit makes QEMU exit at once. The connection usually closes before a reply arrives; that is success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Screendump writes the primary display to file on the QEMU host as "ppm" or "png" (QEMU 7.1+;
// "" means QEMU's default, PPM).
func (c *Client) Screendump(ctx context.Context, file, format string) error {
	args := map[string]any{"filename": file}
	if format != "" {
		args["format"] = format
	}
	return c.Execute(ctx, "screendump", args, nil)
}
