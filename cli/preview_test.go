package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestCopyWithEscape(t *testing.T) {
	tests := []struct {
		name, in, sent string
	}{
		{"Ctrl-] quits at once", "ls\r\x1dignored", "ls\r"},
		{"Ctrl-A x quits", "uname\r\x01xignored", "uname\r"},
		{"Ctrl-A X quits", "\x01X", ""},
		{"Ctrl-A Ctrl-A sends one Ctrl-A", "a\x01\x01b\x1d", "a\x01b"},
		{"Ctrl-A then another key sends both", "\x01c\x1d", "\x01c"},
		{"Ctrl-C goes to the guest", "sleep 9\r\x03\x1d", "sleep 9\r\x03"},
		{"end of input", "echo hi\r", "echo hi\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			copyWithEscape(&got, strings.NewReader(tt.in))
			if got.String() != tt.sent {
				t.Errorf("sent %q, want %q", got.String(), tt.sent)
			}
		})
	}
}

func TestPreviewUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--headless", "--vnc", "x.img"},
		{"--format", "vmdk", "x.img"},
		{"--attach", "floppy", "x.img"},
		{"--accel", "xen", "x.img"},
		{"--image", "a.img", "b.img"},
	} {
		var stderr bytes.Buffer
		log := logrus.New()
		log.SetOutput(&stderr)
		env := &Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Stdin: strings.NewReader(""), Log: log}
		if code := run(t.Context(), env, append([]string{"preview"}, args...)); code != 2 {
			t.Errorf("kiln preview %q: exit %d, want 2 (usage)\n%s", args, code, stderr.String())
		}
	}
}
