package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestThrottleKeepsPhaseChangesAndCompletion(t *testing.T) {
	var got []Event
	f := Throttle(func(e Event) { got = append(got, e) }, time.Hour)
	for i := int64(0); i <= 100; i++ {
		f(Event{Phase: "writing", Done: i, Total: 100})
	}
	f(Event{Phase: "verifying", Done: 0, Total: 100})
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3 (first, complete, next phase): %+v", len(got), got)
	}
	if got[1].Done != 100 || got[2].Phase != "verifying" {
		t.Fatalf("unexpected events %+v", got)
	}
}

func TestWriterAndReaderCount(t *testing.T) {
	var last Event
	f := Func(func(e Event) { last = e })
	var buf bytes.Buffer
	w := &Writer{W: &buf, F: f, Phase: "copy", Total: 10}
	w.Write([]byte("hello"))
	w.Write([]byte("world"))
	if last.Done != 10 || buf.String() != "helloworld" {
		t.Fatalf("writer: last=%+v buf=%q", last, buf.String())
	}
	r := &Reader{R: strings.NewReader("abc"), F: f, Phase: "read"}
	p := make([]byte, 8)
	r.Read(p)
	if last.Done != 3 || last.Phase != "read" {
		t.Fatalf("reader: last=%+v", last)
	}
	var nilF Func
	nilF.Report(Event{}) // must not panic
}
