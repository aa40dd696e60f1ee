package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
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
