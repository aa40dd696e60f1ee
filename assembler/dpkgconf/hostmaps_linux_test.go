package dpkgconf

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostMapsNoRange: a user without a subordinate range is told how to add one, or to use sudo.
func TestHostMapsNoRange(t *testing.T) {
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Skip("newuidmap is not installed: hostMaps stops before the ranges")
	}
	f := filepath.Join(t.TempDir(), "subid")
	if err := os.WriteFile(f, []byte("someone-else:100000:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := subIDFiles
	subIDFiles = [2]string{f, f}
	defer func() { subIDFiles = saved }()
	_, err := hostMaps()
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "usermod --add-subuids") || !strings.Contains(err.Error(), "sudo") {
		t.Errorf("error %v, want ErrUnsupported saying how to add a range or to use sudo", err)
	}
}
