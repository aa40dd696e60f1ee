package flasher

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/progress"

	"github.com/kilnproject/kiln/internal/testenv"
)

// helperPipe runs ServeHelper on one end of a pair of pipes and the client on the other: the
// protocol as the desktop app speaks it, without pkexec.
func helperPipe(t *testing.T, req HelperRequest, open func(string) (*os.File, error)) ([]Result, error, int64) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ServeHelper(context.Background(), inR, outW, logrus.New(), open)
		outW.Close()
		done <- err
	}()
	var events atomic.Int64
	res, err := talkToHelper(context.Background(), inW, outR, req, func(e progress.Event) {
		if e.Device == "" || e.Phase == "" {
			t.Errorf("event %+v", e)
		}
		events.Add(1)
	})
	<-done
	return res, err, events.Load()
}

func TestHelperProtocol(t *testing.T) {
	needRoot(t, "cmp")
	img := testImage(t, t.TempDir(), 6<<20)
	dev := loopDevice(t, 8<<20)
	d, _ := Lookup(dev)
	res, err, events := helperPipe(t, HelperRequest{Image: img, Devices: []string{dev}, Expect: []Device{d}},
		func(p string) (*os.File, error) { return OpenAsUser(p, 0, 0) })
	if err != nil || len(res) != 1 || !res[0].Verified || events == 0 {
		t.Fatalf("%v %+v events=%d", err, res, events)
	}
	cmpDevice(t, dev, img)

	// Errors keep their sentinel across the protocol.
	_, err, _ = helperPipe(t, HelperRequest{Image: img, Devices: []string{filepath.Join(t.TempDir(), "x")}}, nil)
	if !errors.Is(err, ErrNotBlockDevice) {
		t.Fatalf("got %v", err)
	}
	small := loopDevice(t, 4<<20)
	_, err, _ = helperPipe(t, HelperRequest{Image: img, Devices: []string{small}}, nil)
	if !errors.Is(err, ErrTooSmall) {
		t.Fatalf("got %v", err)
	}
	// A drive that changed since the user chose it.
	d.Serial = "another"
	_, err, _ = helperPipe(t, HelperRequest{Image: img, Devices: []string{dev}, Expect: []Device{d}}, nil)
	if !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("got %v", err)
	}
}

// TestHelperOpensImageAsUser: the root helper refuses an image the requesting user cannot read.
func TestHelperOpensImageAsUser(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	img := testImage(t, dir, 1<<20)
	os.Chmod(img, 0o600) // root's only
	dev := loopDevice(t, 4<<20)
	_, err, _ := helperPipe(t, HelperRequest{Image: img, Devices: []string{dev}},
		func(p string) (*os.File, error) { return OpenAsUser(p, 65534, 65534) })
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("got %v", err)
	}
}

// TestHelperCommand runs the real `kiln flash-helper` binary (as pkexec would, minus pkexec).
func TestHelperCommand(t *testing.T) {
	needRoot(t)
	kiln := os.Getenv("KILN_BIN")
	if kiln == "" {
		testenv.Missing(t, "KILN_BIN not set (run through make test)")
	}
	img := testImage(t, t.TempDir(), 3<<20)
	dev := loopDevice(t, 4<<20)
	cmd, err := HelperCommand(context.Background(), kiln)
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunHelper(context.Background(), cmd, HelperRequest{Image: img, Devices: []string{dev}}, nil)
	if err != nil || !res[0].Verified {
		t.Fatalf("%v %+v", err, res)
	}
	cmpDevice(t, dev, img)
	cmd, _ = HelperCommand(context.Background(), kiln)
	_, err = RunHelper(context.Background(), cmd, HelperRequest{Image: img, Devices: []string{"/dev/null"}}, nil)
	if !errors.Is(err, ErrNotBlockDevice) {
		t.Fatalf("got %v", err)
	}

}

// A checksum mismatch seen through the helper matches the same sentinels as in-process (the
// mismatch and the partly written drive), so the app gives the same advice for both.
func TestHelperChecksumMismatchKeepsItsKinds(t *testing.T) {
	needRoot(t)
	img := testImage(t, t.TempDir(), 2<<20)
	wrong := strings.Repeat("0", 64)
	dev := loopDevice(t, 4<<20)
	_, local := Flash(context.Background(), img, []string{dev}, Options{SHA256: wrong})
	res, remote, _ := helperPipe(t, HelperRequest{Image: img, Devices: []string{dev}, SHA256: wrong}, nil)
	for _, err := range []error{local, remote} {
		if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrPartlyWritten) {
			t.Fatalf("want ErrChecksum and ErrPartlyWritten, got %v", err)
		}
	}
	if l, r := ErrorCodes(local), ErrorCodes(remote); !slices.Equal(l, r) || !slices.Contains(r, "checksum") {
		t.Fatalf("in-process codes %v, through the helper %v", l, r)
	}
	if len(res) != 1 || !errors.Is(res[0].Err, ErrChecksum) {
		t.Fatalf("result %+v", res)
	}
}
