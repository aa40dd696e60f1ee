package app

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
)

// TestServeShowsSigningWarning: when the server cannot re-sign the timestamp, the Serve screen
// says so instead of only "Serving at".
func TestServeShowsSigningWarning(t *testing.T) {
	a, _, _, _, srv := newTestApp(t)
	srv.Warn = "timestamp will not be re-signed: signing key readable by others"
	_ = a.Show("serve")
	s := a.serve
	s.addr.SetText("127.0.0.1:18470")
	test.Tap(s.toggle)
	settle(t, a)
	if !srv.Running() {
		t.Fatal("server not started")
	}
	if !strings.Contains(s.status.Text, "Serving at") || !strings.Contains(s.status.Text, srv.Warn) {
		t.Errorf("status %q does not show the signing warning", s.status.Text)
	}
}
