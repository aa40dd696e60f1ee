package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// recorder stands in for a test, noting how Missing stopped it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recorder) Skip(a ...any)                  { r.skip = fmt.Sprint(a...) }

func TestMissingSkipsLocallyAndFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{}
	Missing(r, "%s is not installed", "qemu")
	if r.skip != "qemu is not installed" || r.fatal != "" {
		t.Errorf("locally: skip=%q fatal=%q", r.skip, r.fatal)
	}
	t.Setenv("CI", "true")
	r = &recorder{}
	Tool(r, "kiln-no-such-tool")
	if !strings.Contains(r.fatal, "kiln-no-such-tool is not installed") || r.skip != "" {
		t.Errorf("under CI: skip=%q fatal=%q", r.skip, r.fatal)
	}
}
