package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

// lan is a repository with 1.0.0 and 1.1.0 of "tiny" behind a server on 127.0.0.1 whose
// /v1/check answers are replaced by check (when set): a hostile host on the LAN.
type lan struct {
	dir   string
	keys  *repo.Keys
	uki   map[string][]byte
	url   string
	check string
}

func newLAN(t *testing.T) *lan {
	l := &lan{dir: t.TempDir(), keys: otatest.Keys(t)}
	l.uki = map[string][]byte{"1.0.0": otatest.Payload(1<<20, 1)}
	l.uki["1.1.0"] = append(bytes.Clone(l.uki["1.0.0"]), "1.1.0"...)
	otatest.Publish(t, l.dir, l.keys, "1.0.0", l.uki["1.0.0"], repo.Options{})
	otatest.Publish(t, l.dir, l.keys, "1.1.0", l.uki["1.1.0"], repo.Options{})
	srv, err := server.New(server.Config{Repo: l.dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/check" && l.check != "" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(l.check))
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	l.url = ts.URL
	return l
}

// device returns a device running 1.0.0 that uses the server of l.
func (l *lan) device(t *testing.T) *device {
	d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
		root: l.keys.Root, server: l.url, uki: l.uki, health: map[string]string{}}
	os.MkdirAll(d.linux(), 0o755)
	os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), l.uki["1.0.0"], 0o644)
	if v := d.boot(); v != "1.0.0" {
		t.Fatalf("booted %s", v)
	}
	return d
}

// TestHostileCheckAnswer: whatever a LAN host answers to /v1/check, the agent does not crash;
// it installs what the signed metadata offers.
func TestHostileCheckAnswer(t *testing.T) {
	l := newLAN(t)
	for _, answer := range []string{
		`{"update":true}`,
		`{"update":true,"target":null,"delta":{}}`,
		`{"update":true,"target":{"version":"9.9.9/../../x","path":"../../etc/passwd","size":-1}}`,
		`{"update":true,"target":{},"interval":-7}`,
		`{"update":true,"interval":9223372036854775807,"message":"` + strings.Repeat("x", 100000) + `"}`,
	} {
		t.Run(answer[:min(len(answer), 40)], func(t *testing.T) {
			l.check = answer
			d := l.device(t)
			a := d.agent("1.0.0")
			if err := a.CheckAndInstall(context.Background()); err == nil || d.reboots != 1 {
				t.Fatalf("err %v, %d reboots; want the signed 1.1.0 installed", err, d.reboots)
			}
			if got := d.files(); len(got) != 2 || got[1] != "tiny-1.1.0+3.efi" {
				t.Fatalf("ESP: %v", got)
			}
		})
	}
}

// TestSignedEscapingVersionRefused: a target whose signed version is not a semantic version
// (here one that climbs out of the ESP) is never installed, whatever the server offers.
func TestSignedEscapingVersionRefused(t *testing.T) {
	l := newLAN(t)
	const evil = "1.1.0-x/../../ESCAPED"
	otatest.Resign(t, l.dir, l.keys, func(tg *ota.Target) {
		if tg.Version == "1.1.0" {
			tg.Version = evil
		}
	})
	l.check = `{"update":true,"target":{"version":"` + evil + `"}}`
	d := l.device(t)
	err := d.agent("1.0.0").CheckAndInstall(context.Background())
	if !errors.Is(err, ota.ErrNoUpdate) || d.reboots != 0 {
		t.Fatalf("err %v, %d reboots; want ErrNoUpdate", err, d.reboots)
	}
	if got := d.files(); len(got) != 1 {
		t.Fatalf("ESP: %v", got)
	}
	filepath.WalkDir(filepath.Dir(d.esp), func(p string, de fs.DirEntry, err error) error {
		if strings.Contains(p, "ESCAPED") {
			t.Errorf("wrote %s", p)
		}
		return nil
	})
}

// TestRollbackNeedsESPRead: when the ESP cannot be read at boot, the agent does not decide
// that the pending version was rolled back; it stays installable and boots on trial later.
func TestRollbackNeedsESPRead(t *testing.T) {
	l := newLAN(t)
	d := l.device(t)
	ctx := context.Background()
	if err := d.agent("1.0.0").CheckAndInstall(ctx); err == nil || d.reboots != 1 {
		t.Fatalf("install: %v", err)
	}
	// 1.0.0 starts again (a power cut before the reboot) and EFI/Linux cannot be read.
	off := d.linux() + ".off"
	if err := os.Rename(d.linux(), off); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(d.linux(), []byte("not a directory"), 0o644)
	if err := d.agent("1.0.0").Assess(ctx); err == nil || !strings.Contains(err.Error(), "1.1.0") {
		t.Fatalf("Assess with an unreadable ESP: %v, want an error naming 1.1.0", err)
	}
	if b, err := os.ReadFile(filepath.Join(d.data, "kiln", "ota", "failed")); err == nil {
		t.Fatalf("marked as failed after a read error: %q", b)
	}
	os.Remove(d.linux())
	os.Rename(off, d.linux())
	if v := d.boot(); v != "1.1.0" {
		t.Fatalf("booted %s, want 1.1.0 on trial", v)
	}
	if err := d.agent("1.1.0").Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.files(); len(got) != 2 || got[1] != "tiny-1.1.0.efi" {
		t.Fatalf("ESP after blessing: %v", got)
	}
}
