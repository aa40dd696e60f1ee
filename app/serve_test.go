package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler"
)

// The Serve screen filters the devices by state and version, shows a device's history when it
// is selected, and says why a rollout paused.
func TestServeHistoryFiltersAndRollouts(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	_ = a.Show("serve")
	s := a.serve
	s.addr.SetText("127.0.0.1:18471")
	test.Tap(s.toggle)
	settle(t, a)
	if len(s.devices) != 2 {
		t.Fatalf("devices table has %d rows, want 2", len(s.devices))
	}
	if s.paused.Hidden || !strings.Contains(s.paused.Text, "Rollout of 1.1.0 paused automatically: 1 of 1 devices that installed 1.1.0 rolled back") {
		t.Errorf("paused rollout not explained: hidden %v, %q", s.paused.Hidden, s.paused.Text)
	}
	if got := s.versionCell(PublishedVersion{Version: "1.1.0"}, 5); got != "paused at 10%" {
		t.Errorf("rollout cell of 1.1.0: %q", got)
	}
	if got := s.versionCell(PublishedVersion{Version: "1.0.0"}, 5); got != "every device" {
		t.Errorf("rollout cell of 1.0.0: %q", got)
	}

	// Filters: the choices are what the table holds.
	if got := strings.Join(s.stateFilter.Options, ","); got != "All,downloading,healthy" {
		t.Errorf("state choices %q", got)
	}
	if got := strings.Join(s.versionFilter.Options, ","); got != "All,1.0.0,0.9.0" {
		t.Errorf("version choices %q", got)
	}
	s.stateFilter.SetSelected("healthy")
	if len(s.devices) != 1 || s.devices[0].ID != "a1b2c3" {
		t.Fatalf("state filter healthy: %+v", s.devices)
	}
	s.stateFilter.SetSelected(allChoice)
	s.versionFilter.SetSelected("0.9.0")
	if len(s.devices) != 1 || s.devices[0].ID != "d4e5f6" {
		t.Fatalf("version filter 0.9.0: %+v", s.devices)
	}
	s.stateFilter.SetSelected("healthy")
	if len(s.devices) != 0 || !s.devicesTable.Hidden {
		t.Fatalf("healthy on 0.9.0: %+v", s.devices)
	}
	s.stateFilter.SetSelected(allChoice)
	s.versionFilter.SetSelected(allChoice)

	// Selecting a device shows its history, newest first.
	if !s.historyTable.Hidden {
		t.Error("history shown before a device is selected")
	}
	s.devicesTable.Select(widget.TableCellID{Row: 0, Col: 0})
	settle(t, a)
	if s.selected != "a1b2c3" || len(s.history) != 3 || s.historyTable.Hidden {
		t.Fatalf("history of the first device: selected %q, %d events", s.selected, len(s.history))
	}
	if !strings.Contains(s.historyTitle.Text, "a1b2c3: 3 events") {
		t.Errorf("history title %q", s.historyTitle.Text)
	}
	if got := historyCell(s.history[0], 1) + " " + historyCell(s.history[2], 1); got != "healthy update-available" {
		t.Errorf("history order: %q", got)
	}
	test.AssertRendersToMarkup(t, "serve_history.xml", a.win.Canvas())
}

// Publishing a build that also made an ISO says on the Serve screen that the ISO takes no updates.
func TestServePublishNotesReadOnlyISO(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "manifest.json")
	m := assembler.Manifest{Name: "disc", Version: "1.0.0", Image: assembler.ImageInfo{File: "disc.img"},
		ISO: &assembler.ISOInfo{File: "disc.iso", ReadOnly: true}}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a.carry(&BuildResult{Name: "disc", Version: "1.0.0", Image: filepath.Join(dir, "disc.img"), Manifest: manifest}, "serve")
	waitFor(t, func() bool { return strings.Contains(a.serve.current.Text, "Published") })
	if !strings.Contains(a.serve.current.Text, "disc.iso is read-only: a device booted from it takes no updates (flash disc.img for that)") {
		t.Errorf("Serve screen: %q", a.serve.current.Text)
	}
}
