package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeQEMU answers like QEMU's QMP monitor: a greeting, then a reply per command (echoing "id"),
// with an event sent before the reply to "system_powerdown".
func fakeQEMU(t *testing.T, conn net.Conn) {
	t.Helper()
	go func() {
		defer conn.Close()
		enc := json.NewEncoder(conn)
		enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}})
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute   string          `json:"execute"`
				ID        any             `json:"id"`
				Arguments json.RawMessage `json:"arguments"`
			}
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				return
			}
			switch req.Execute {
			case "qmp_capabilities", "cont":
				enc.Encode(map[string]any{"return": map[string]any{}, "id": req.ID})
			case "query-status":
				enc.Encode(map[string]any{"return": map[string]any{"running": true, "status": "running"}, "id": req.ID})
			case "system_powerdown":
				enc.Encode(map[string]any{"event": "POWERDOWN", "data": map[string]any{}, "timestamp": map[string]any{"seconds": 1, "microseconds": 2}})
				enc.Encode(map[string]any{"return": map[string]any{}, "id": req.ID})
			case "quit":
				return // QEMU exits before or right after replying
			default:
				enc.Encode(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "The command " + req.Execute + " has not been found"}, "id": req.ID})
			}
		}
	}()
}

func TestClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := net.Pipe()
	fakeQEMU(t, b)
	c, err := NewClient(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if err := c.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := <-c.Events(); ev.Name != "POWERDOWN" || ev.Time.Unix() != 1 {
		t.Errorf("event = %+v, want POWERDOWN at 1s", ev)
	}
	var qe *Error
	if err := c.Execute(ctx, "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: err = %v, want a CommandNotFound *Error", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("Quit = %v, want nil when QEMU closes the connection", err)
	}
	<-c.Done()
	if err := c.Cont(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("command after close: %v, want ErrClosed", err)
	}
}

// scriptedQEMU sends script on conn as QEMU would, reading (and dropping) what the client writes,
// then closes the connection.
func scriptedQEMU(conn net.Conn, script []byte) {
	go io.Copy(io.Discard, conn)
	go func() {
		conn.Write(script)
		conn.Close()
	}()
}

// A reply longer than MaxMessage ends the connection with ErrTooLong instead of being read into
// memory whole.
func TestOverlongReplyEndsTheConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := net.Pipe()
	huge := `{"return": {}, "id": "1", "padding": "` + strings.Repeat("a", MaxMessage+1) + `"}` + "\r\n"
	scriptedQEMU(b, []byte(`{"QMP": {"version": {}, "capabilities": []}}`+"\r\n"+huge))
	c, err := NewClient(ctx, a)
	if err == nil {
		c.Close()
		t.Fatal("NewClient accepted a 4 MiB+ reply to qmp_capabilities")
	}
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), ErrTooLong.Error()) {
		t.Errorf("err = %v, want the connection closed for a message over %d bytes", err, MaxMessage)
	}
}

// A QMP peer that never greets cannot hold NewClient beyond its context.
func TestHandshakeEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := NewClient(ctx, a)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NewClient still waits for a greeting after its context ended")
	}
}
