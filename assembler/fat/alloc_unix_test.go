//go:build unix

package fat

import (
	"syscall"
	"testing"
)

// allocated is the space a file takes on disk: less than its size when it is sparse.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
