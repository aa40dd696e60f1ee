package vmrunner

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestStartErrorsSayWhatToDo(t *testing.T) {
	img := writeMBRImage(t, "tiny.img")
	tests := []struct {
		name    string
		cfg     Config
		is      error
		mention string
	}{
		{"QEMU missing", Config{Image: img, QEMU: "qemu-system-x86_64-not-installed"}, ErrQEMUNotFound, "qemu-system-x86_64-not-installed"},
		{"image missing", Config{Image: filepath.Join(t.TempDir(), "gone.img"), Display: DisplayNone}, ErrImageNotFound, "gone.img"},
		{"not an image", Config{Image: os.Args[0], Display: DisplayNone}, ErrUnknownFormat, os.Args[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.is != ErrQEMUNotFound {
				needQEMU(t)
			}
			vm, err := Start(context.Background(), tt.cfg)
			if err == nil {
				vm.Stop()
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("err = %v; want %v naming %q", err, tt.is, tt.mention)
			}
		})
	}
}

func TestInstallHints(t *testing.T) {
	for distro, want := range map[string]string{
		"debian": "sudo apt install qemu-system-x86 ovmf",
		"fedora": "sudo dnf install qemu-system-x86 edk2-ovmf",
		"arch":   "sudo pacman -S qemu-desktop edk2-ovmf",
		"suse":   "sudo zypper install qemu-x86 qemu-ovmf-x86_64",
	} {
		if got := linuxInstall(distro, "qemu"); got != want {
			t.Errorf("%s: %q, want %q", distro, got, want)
		}
	}
	if got := linuxInstall("debian", "ovmf"); got != "sudo apt install ovmf" {
		t.Errorf("debian ovmf: %q", got)
	}
	if h := installHint("qemu"); !strings.Contains(h, "install") {
		t.Errorf("hint on %s: %q names no install step", runtime.GOOS, h)
	}
}

// The leftover check of TestMain must see a QEMU this run started and did not stop.
func TestLeftoverCheckSeesStrayQEMU(t *testing.T) {
	qemu := needQEMU(t)
	if runtime.GOOS != "linux" {
		t.Skip("the check reads /proc")
	}
	cmd := exec.Command(qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S")
	prepareCommand(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		killProcess(cmd)
		cmd.Wait()
	}()
	mark := os.Getenv(testMarkEnv)
	var left []string
	for deadline := time.Now().Add(10 * time.Second); len(left) == 0 && time.Now().Before(deadline); {
		left = leftoverQEMU(mark, 0)
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) == 0 {
		t.Fatal("a running QEMU started by the tests was not found")
	}
}
