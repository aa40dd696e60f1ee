package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"unicode/utf16"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/agent"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		file       string
		base       string
		counted    bool
		left, done int
		ok         bool
	}{
		{"kiln-tiny-1.1.0+3.efi", "kiln-tiny-1.1.0", true, 3, 0, true},
		{"kiln-tiny-1.1.0+2-1.efi", "kiln-tiny-1.1.0", true, 2, 1, true},
		{"kiln-tiny-1.1.0+0-3.efi", "kiln-tiny-1.1.0", true, 0, 3, true},
		{"kiln-tiny-1.1.0.efi", "kiln-tiny-1.1.0", false, 0, 0, true},
		{"kiln-tiny-1.1.0+build.efi", "kiln-tiny-1.1.0+build", false, 0, 0, true},
		{".kiln-tiny-1.1.0.efi.part", "", false, 0, 0, false},
		{"loader.conf", "", false, 0, 0, false},
	} {
		e, ok := agent.ParseEntry(tc.file)
		if ok != tc.ok || (ok && (e.Base != tc.base || e.Counted != tc.counted || e.Left != tc.left || e.Done != tc.done)) {
			t.Errorf("ParseEntry(%q) = %+v, %v", tc.file, e, ok)
		}
	}
	if got := agent.TrialName("kiln-tiny-1.2.0", 3); got != "kiln-tiny-1.2.0+3.efi" {
		t.Errorf("TrialName = %s", got)
	}
}

// device is a simulated Kiln device: an ESP directory, efivarfs, a data partition, and
// systemd-boot's boot counting done by boot().
type device struct {
	t                      *testing.T
	esp, efivars, data, et string
	root                   []byte
	server                 string
	reboots                int
	uki                    map[string][]byte   // version → UKI content, to know what boots
	health                 map[string]string   // version → health check
	config                 func(*agent.Config) // more settings, for images with root slots
}

func (d *device) linux() string { return filepath.Join(d.esp, "EFI", "Linux") }

func (d *device) files() []string {
	des, _ := os.ReadDir(d.linux())
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	sort.Strings(out)
	return out
}

// boot does what systemd-boot does: pick the newest entry with tries left (or blessed),
// count the try down and set LoaderBootCountPath. It returns the version booted.
func (d *device) boot() string {
	var best *agent.Entry
	var bestVer string
	for _, f := range d.files() {
		e, ok := agent.ParseEntry(f)
		if !ok || (e.Counted && e.Left == 0) {
			continue
		}
		v := e.Base[len("tiny-"):]
		if c, _ := ota.CompareVersions(v, bestVer+map[bool]string{true: "0.0.0"}[bestVer == ""]); best == nil || c > 0 {
			e := e
			best, bestVer = &e, v
		}
	}
	if best == nil {
		d.t.Fatal("nothing to boot")
	}
	os.Remove(filepath.Join(d.efivars, "LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"))
	file := best.File
	if best.Counted {
		file = best.Base + "+" + itoa(best.Left-1) + "-" + itoa(best.Done+1) + ".efi"
		if err := os.Rename(filepath.Join(d.linux(), best.File), filepath.Join(d.linux(), file)); err != nil {
			d.t.Fatal(err)
		}
		writeEFIVar(d.t, d.efivars, "LoaderBootCountPath", `\EFI\Linux\`+file)
	}
	got, _ := os.ReadFile(filepath.Join(d.linux(), file))
	if !bytes.Equal(got, d.uki[bestVer]) {
		d.t.Fatalf("boot entry %s does not hold the UKI of %s", file, bestVer)
	}
	return bestVer
}

func itoa(i int) string { return string(rune('0' + i)) }

func writeEFIVar(t *testing.T, dir, name, value string) {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(7))
	for _, c := range utf16.Encode([]rune(value)) {
		binary.Write(&b, binary.LittleEndian, c)
	}
	b.Write([]byte{0, 0})
	if err := os.WriteFile(filepath.Join(dir, name+"-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// releaseFiles writes an image's /etc/kiln/release.json and root.json into dir.
func releaseFiles(dir string, rel agent.Release, root []byte) (release, rootPath string) {
	b, _ := json.Marshal(rel)
	os.MkdirAll(dir, 0o755)
	release, rootPath = filepath.Join(dir, "release.json"), filepath.Join(dir, "root.json")
	os.WriteFile(release, b, 0o644)
	os.WriteFile(rootPath, root, 0o644)
	return release, rootPath
}

// testLog is the agent's log in tests: shown with -v, discarded otherwise.
func testLog() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	return log
}

// agent starts the agent of the booted version.
func (d *device) agent(version string) *agent.Agent {
	rel := agent.Release{Name: "tiny", Version: version, Arch: "x86_64", Board: "pc", Channel: "stable",
		Server: d.server, HealthCheck: d.health[version]}
	release, root := releaseFiles(filepath.Join(d.et, version), rel, d.root)
	log := testLog()
	cfg := agent.Config{
		Release: release, Root: root,
		ESP: d.esp, State: filepath.Join(d.data, "kiln", "ota"), EFIVars: d.efivars,
		HealthAttempts: 1, HealthPause: 1,
		Reboot: func(context.Context) error { d.reboots++; return nil }, Log: log,
	}
	if d.config != nil {
		d.config(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	return a
}

func TestUpdateBlessAndRollback(t *testing.T) {
	keys := otatest.Keys(t)
	dir := t.TempDir()
	uki := map[string][]byte{"1.0.0": otatest.Payload(2<<20, 1)}
	uki["1.1.0"] = append(bytes.Clone(uki["1.0.0"]), []byte("1.1.0 adds a file")...)
	uki["1.2.0"] = append(bytes.Clone(uki["1.1.0"]), []byte("1.2.0 is broken")...)
	otatest.Publish(t, dir, keys, "1.0.0", uki["1.0.0"], repo.Options{})
	otatest.Publish(t, dir, keys, "1.1.0", uki["1.1.0"], repo.Options{})

	srv := startServer(t, dir)

	d := &device{t: t, esp: t.TempDir(), efivars: t.TempDir(), data: t.TempDir(), et: t.TempDir(),
		root: keys.Root, server: srv.URL(), uki: uki, health: map[string]string{"1.2.0": "false", "1.1.0": "true"}}
	os.MkdirAll(d.linux(), 0o755)
	os.WriteFile(filepath.Join(d.linux(), "tiny-1.0.0.efi"), uki["1.0.0"], 0o644)
	ctx := context.Background()
	table := func() ota.DeviceStatus {
		rows := srv.Devices()
		if len(rows) != 1 {
			t.Fatalf("device table has %d rows: %+v", len(rows), rows)
		}
		return rows[0]
	}

	// 1.0.0 boots, is healthy, installs 1.1.0 (a delta: one file changed) and reboots.
	if v := d.boot(); v != "1.0.0" {
		t.Fatalf("booted %s", v)
	}
	a := d.agent("1.0.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if row := table(); row.State != ota.StateHealthy || row.Version != "1.0.0" {
		t.Fatalf("after first boot: %+v", row)
	}
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 1 {
		t.Fatalf("install: err %v, %d reboots", err, d.reboots)
	}
	if got := d.files(); len(got) != 2 || got[1] != "tiny-1.1.0+3.efi" {
		t.Fatalf("ESP after install: %v", got)
	}
	if row := table(); row.State != ota.StateInstalled || row.Target != "1.1.0" {
		t.Fatalf("after install: %+v", row)
	}

	// 1.1.0 boots on trial, passes its health check and is blessed.
	if v := d.boot(); v != "1.1.0" {
		t.Fatalf("booted %s after install", v)
	}
	if err := d.agent("1.1.0").Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.files(); len(got) != 2 || got[1] != "tiny-1.1.0.efi" {
		t.Fatalf("ESP after blessing: %v", got)
	}
	if row := table(); row.State != ota.StateHealthy || row.Version != "1.1.0" {
		t.Fatalf("after update: %+v", row)
	}

	// A broken 1.2.0 is installed; it fails its health check on every try and the boot loader
	// goes back to 1.1.0, which reports the rollback and does not take 1.2.0 again.
	otatest.Publish(t, dir, keys, "1.2.0", uki["1.2.0"], repo.Options{})
	a = d.agent("1.1.0")
	a.Assess(ctx)
	if err := a.CheckAndInstall(ctx); err == nil || d.reboots != 2 {
		t.Fatalf("install 1.2.0: err %v, %d reboots", err, d.reboots)
	}
	if got := d.files(); len(got) != 2 || got[0] != "tiny-1.1.0.efi" || got[1] != "tiny-1.2.0+3.efi" {
		t.Fatalf("ESP after installing 1.2.0 (1.0.0 removed to make room, 1.1.0 kept): %v", got)
	}
	for try := 1; try <= 3; try++ {
		if v := d.boot(); v != "1.2.0" {
			t.Fatalf("try %d booted %s", try, v)
		}
		d.agent("1.2.0").Assess(ctx)
		if d.reboots != 2+try {
			t.Fatalf("unhealthy try %d did not reboot", try)
		}
		if row := table(); row.State != ota.StateUnhealthy || row.Version != "1.2.0" {
			t.Fatalf("try %d: %+v", try, row)
		}
	}
	if v := d.boot(); v != "1.1.0" {
		t.Fatalf("after three failed tries the boot loader chose %s", v)
	}
	a = d.agent("1.1.0")
	if err := a.Assess(ctx); err != nil {
		t.Fatal(err)
	}
	if row := table(); row.State != ota.StateRolledBack || row.Version != "1.1.0" || row.Target != "1.2.0" {
		t.Fatalf("after rollback: %+v", row)
	}
	if got := d.files(); len(got) != 1 || got[0] != "tiny-1.1.0.efi" {
		t.Fatalf("ESP after rollback: %v", got)
	}
	if err := a.CheckAndInstall(ctx); !errors.Is(err, ota.ErrNoUpdate) {
		t.Fatalf("check after rollback: %v, want ErrNoUpdate (1.2.0 is not retried)", err)
	}
}

// startServer starts an update server for the repository in dir on a free port of 127.0.0.1;
// it stops when the test ends.
func startServer(t *testing.T, dir string) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	return srv
}
