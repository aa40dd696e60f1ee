package flasher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckTarget(t *testing.T) {
	stick := Device{Path: "/dev/sdb", Name: "sdb", Size: 16e9, Removable: true, Transport: "usb", Model: "Ultra Fit"}
	internal := Device{Path: "/dev/sda", Name: "sda", Size: 500e9, Internal: true, Transport: "sata", Model: "Samsung SSD 870"}
	system := internal
	system.System, system.SystemReason = true, "/ is mounted from sda2"
	ro := stick
	ro.ReadOnly = true
	empty := stick
	empty.Size = 0
	cases := []struct {
		name       string
		d          Device
		imageDisks []string
		opts       Options
		want       error
	}{
		{"removable stick", stick, []string{"nvme0n1"}, Options{}, nil},
		{"system drive", system, nil, Options{AllowInternal: true, Confirm: map[string]string{"/dev/sda": "Samsung SSD 870"}}, ErrSystemDrive},
		{"image on the drive", stick, []string{"sdb"}, Options{}, ErrImageOnDevice},
		{"read-only", ro, nil, Options{}, ErrReadOnly},
		{"no medium", empty, nil, Options{}, ErrRemoved},
		{"internal refused", internal, nil, Options{}, ErrInternal},
		{"internal without typing", internal, nil, Options{AllowInternal: true}, ErrInternal},
		{"internal mistyped", internal, nil, Options{AllowInternal: true, Confirm: map[string]string{"/dev/sda": "samsung"}}, ErrInternal},
		{"internal confirmed", internal, nil, Options{AllowInternal: true, Confirm: map[string]string{"/dev/sda": " Samsung SSD 870\n"}}, nil},
	}
	for _, c := range cases {
		err := checkTarget(c.d, c.imageDisks, "/images/x.img", c.opts)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestBmapCandidates(t *testing.T) {
	got := strings.Join(bmapCandidates("/o/tiny.img.xz"), " ")
	if got != "/o/tiny.img.xz.bmap /o/tiny.img.bmap /o/tiny.bmap" {
		t.Fatal(got)
	}
}

// TestPipelineOnMemoryDevice flashes through the whole pipeline into memory (no root needed):
// the head is written last, the data verified.
func TestPipelineOnMemoryDevice(t *testing.T) {
	img := testImage(t, t.TempDir(), 6<<20+512)
	mem := &memDevice{data: make([]byte, 8<<20)}
	var (
		mu    sync.Mutex
		order []int64
	)
	mem.fail = func(off int64) error { mu.Lock(); order = append(order, off); mu.Unlock(); return nil }
	opts := memOptions(mem)
	res, err := Flash(context.Background(), img, []string{"/dev/mem-test"}, opts)
	if err != nil || !res[0].Verified {
		t.Fatalf("%v %+v", err, res)
	}
	want, _ := os.ReadFile(img)
	if string(mem.data[:len(want)]) != string(want) {
		t.Fatal("memory device differs from the image")
	}
	if order[len(order)-1] != 0 {
		t.Fatalf("the first MiB was not written last: %v", order)
	}
}

func TestCancelReturnsQuicklyAndSaysIncomplete(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "big.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 256<<20)
	mem := &memDevice{data: make([]byte, 256<<20)}
	mem.fail = func(int64) error { time.Sleep(100 * time.Millisecond); return nil } // a slow drive
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := Flash(ctx, img, []string{"/dev/mem-test"}, memOptions(mem))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("got %v", err)
	}
	if res[0].Verified {
		t.Fatal("cancelled flash reported verified")
	}
}

func TestImageWithBadBlockMapRefused(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir, 2<<20)
	os.WriteFile(img+".bmap", []byte(`<?xml version="1.0" ?><bmap version="2.0"><ImageSize> 2097152 </ImageSize><BlockSize> 4096 </BlockSize><BlocksCount> 512 </BlocksCount><ChecksumType> sha256 </ChecksumType><BlockMap><Range chksum="00"> 0-3 </Range></BlockMap></bmap>`), 0o644)
	mem := &memDevice{data: make([]byte, 4<<20)}
	_, err := Flash(context.Background(), img, []string{"/dev/mem-test"}, memOptions(mem))
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "block map") {
		t.Fatalf("got %v", err)
	}
}
