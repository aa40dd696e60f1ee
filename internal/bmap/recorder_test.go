package bmap

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A sparse file written through a Recorder maps the same from its writes as from its holes.
func TestRecorderMapsWhatWasWritten(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(f)
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i)
	}
	for _, off := range []int64{40 << 20, 0, 5000, 1 << 20, (1 << 20) + 10000, 64<<20 - 100} {
		n := int64(len(data))
		if off+n > 64<<20 {
			n = 64<<20 - off
		}
		if _, err := r.WriteAt(data[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Seek(8<<20, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write(data); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{0, 15000}, {1 << 20, 1<<20 + 20000}, {8 << 20, 8<<20 + 10000}, {40 << 20, 40<<20 + 10000}, {64<<20 - 100, 64 << 20}}
	if got := r.Written(); !reflect.DeepEqual(got, want) {
		t.Fatalf("written %v, want %v", got, want)
	}
	fromWrites, err := FromExtents(f, 4096, r.Written())
	if err != nil {
		t.Fatal(err)
	}
	fromHoles, err := Create(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromWrites, fromHoles) {
		t.Fatalf("map from writes %+v\nmap from holes %+v", fromWrites.Ranges, fromHoles.Ranges)
	}
	if _, err := FromExtents(f, 4096, [][2]int64{{64 << 20, 65 << 20}}); err == nil {
		t.Fatal("a range past the end was mapped")
	}
}
