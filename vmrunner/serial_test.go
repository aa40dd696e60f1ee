package vmrunner

import (
	"context"
	"io"
	"slices"
	"testing"
)

func TestConsoleLogFindAcrossWrites(t *testing.T) {
	l := newConsoleLog()
	done := make(chan bool)
	go func() {
		found, err := l.find(context.Background(), "kiln: ready name=x")
		done <- found && err == nil
	}()
	for _, chunk := range []string{"booting\r\nki", "ln: rea", "dy name", "=x version=1\r\n"} {
		l.Write([]byte(chunk))
	}
	if !<-done {
		t.Fatal("text split over four writes not found")
	}
	l.close()
	if found, err := l.find(context.Background(), "never printed"); found || err != nil {
		t.Errorf("find after close = %v, %v; want false, nil", found, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newConsoleLog().find(ctx, "x"); err != context.Canceled {
		t.Errorf("find with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestConsoleLogTail(t *testing.T) {
	l := newConsoleLog()
	l.Write([]byte("\x1b[2J\x1b[01;01Hfirmware\r\nline 1\r\nprogress 10%\rprogress 100%\r\nline 3"))
	want := []string{"progress 100%", "line 3"}
	if got := l.tail(2); !slices.Equal(got, want) {
		t.Errorf("tail(2) = %q, want %q", got, want)
	}
	if got := l.tail(40); len(got) != 4 || got[0] != "firmware" {
		t.Errorf("tail(40) = %q, want 4 lines starting with \"firmware\" (escape sequences removed)", got)
	}
	// SeaBIOS's serial console starts with a terminal reset (ESC c) and private CSI modes.
	l = newConsoleLog()
	l.Write([]byte("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n"))
	if got := l.tail(1); len(got) != 1 || got[0] != "SeaBIOS (version 1.16.2)" {
		t.Errorf("tail(1) = %q, want the banner without escape sequences", got)
	}
}

func TestConsoleReaderReplaysFromPowerOn(t *testing.T) {
	l := newConsoleLog()
	l.Write([]byte("early "))
	r := &logReader{l: l, closed: make(chan struct{})}
	go func() {
		l.Write([]byte("late"))
		l.close()
	}()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "early late" {
		t.Fatalf("ReadAll = %q, %v; want \"early late\"", got, err)
	}
	r2 := &logReader{l: newConsoleLog(), closed: make(chan struct{})}
	r2.Close()
	if _, err := r2.Read(make([]byte, 1)); err != io.ErrClosedPipe {
		t.Errorf("Read after Close = %v, want io.ErrClosedPipe", err)
	}
}
