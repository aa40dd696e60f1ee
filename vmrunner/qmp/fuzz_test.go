package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"
)

// qmpSeeds are what QEMU 7–9 send: greeting, replies, events, errors, and broken variants.
var qmpSeeds = []string{
	`{"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}` + "\r\n" +
		`{"return": {}, "id": "1"}` + "\r\n" +
		`{"timestamp": {"seconds": 1700000000, "microseconds": 12}, "event": "STOP"}` + "\r\n" +
		`{"return": {"status": "internal-error", "singlestep": false, "running": false}, "id": "2"}` + "\r\n",
	`{"QMP": {"version": {}, "capabilities": []}}` + "\n" + `{"error": {"class": "CommandNotFound", "desc": "no"}, "id": "1"}` + "\n",
	`{"QMP": {}}` + "\n\n\n" + `{"return": {}, "id": "1"}` + "\n" + `{"return": {"running": true, "status": "running"}, "id": "2"}`,
	`{"QMP": null}` + "\n",
	`{"QMP": {}}{"return": {}, "id": "1"}` + "\n",
	`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": -1, "microseconds": -9223372036854775808}}` + "\n",
	`{"QMP": {}}` + "\n" + `{"return": {}, "id": 1}` + "\n",
	`{"QMP": {}}` + "\n" + `{"return": {}, "id": "1"` + "\n",
	"\x00\xff\n{",
}

// readMessage never panics, ends, and gives each message from its own line of at most
// MaxMessage bytes; a message it returns encodes back to JSON.
func FuzzQMPReadMessage(f *testing.F) {
	for _, s := range qmpSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16) // small: lines span several buffers
		lines := bytes.Count(data, []byte("\n"))
		for n := 0; ; n++ {
			if n > lines {
				t.Fatalf("%d messages from %d lines", n, lines)
			}
			m, err := readMessage(r)
			if err != nil {
				break
			}
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("a message read does not encode back: %v", err)
			}
		}
	})
}

// Whatever QEMU's side of the socket sends, the client's handshake and commands return (with a
// result or an error) before their context ends, and the connection's end closes Done and Events.
func FuzzQMPClient(f *testing.F) {
	for _, s := range qmpSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, b := net.Pipe()
		scriptedQEMU(b, data)
		c, err := NewClient(ctx, a)
		if ctx.Err() != nil {
			t.Fatalf("the handshake waited until its context ended (err %v)", err)
		}
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := c.Status(ctx); errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("Status waited until its context ended")
		}
		for range c.Events() { // closed when the script ends
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("the connection did not end with the script")
		}
	})
}
