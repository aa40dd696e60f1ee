package initramfs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAppletsMatchBusybox compares the applet table read from the binary with what the binary
// itself prints (busybox --list-full).
func TestAppletsMatchBusybox(t *testing.T) {
	bin := busyboxBinary(t)
	apps, err := Applets(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, bin, 0o755)
	out, err := exec.Command(path, "--list-full").Output()
	if err != nil {
		t.Skipf("cannot run the busybox binary here: %v", err)
	}
	want := map[string]string{}
	for _, l := range strings.Fields(string(out)) {
		dir, name := "", l
		if i := strings.LastIndexByte(l, '/'); i >= 0 {
			dir, name = l[:i], l[i+1:]
		}
		want[name] = dir
	}
	if len(apps) != len(want) {
		t.Errorf("%d applets read, busybox lists %d", len(apps), len(want))
	}
	for _, a := range apps {
		if d, ok := want[a.Name]; !ok || d != a.Dir {
			t.Errorf("applet %s in %q, busybox says %q (listed %v)", a.Name, a.Dir, d, ok)
		}
	}
}

func TestAppletsRejectsOtherBinaries(t *testing.T) {
	self, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	if _, err := Applets(self); err == nil {
		t.Fatal("/bin/true accepted as busybox")
	}
}

// TestScriptCommandsAreApplets checks that every command the init scripts run exists in the
// busybox of the image.
func TestScriptCommandsAreApplets(t *testing.T) {
	apps, err := Applets(busyboxBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range apps {
		have[a.Name] = true
	}
	for _, c := range []string{"sh", "mount", "umount", "grep", "modprobe", "findfs", "usleep", "readlink",
		"hostname", "ip", "udhcpc", "stty", "timeout", "killall", "sleep", "sync", "mkdir", "ln", "cat",
		"mv", "getty", "login", "init", "reboot", "date", "id", "stat", "tr"} {
		if !have[c] {
			t.Errorf("the init scripts use %s, which this busybox lacks", c)
		}
	}
}
