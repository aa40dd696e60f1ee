package vmrunner

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testMarkEnv is set for the whole test binary; every QEMU the tests start (directly or through
// the kiln binary) inherits it, which lets TestMain find any that outlived the suite.
const testMarkEnv = "KILN_VMRUNNER_TEST_RUN"

func TestMain(m *testing.M) {
	mark := strconv.Itoa(os.Getpid())
	os.Setenv(testMarkEnv, mark)
	code := m.Run()
	if left := leftoverQEMU(mark, 10*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: QEMU processes left after the tests: %s\n", strings.Join(left, "; "))
		code = 1
	}
	os.Exit(code)
}

// leftoverQEMU lists QEMU processes that carry this test run's mark, giving exiting ones up to
// grace to go. Only Linux exposes other processes' environments (/proc/PID/environ).
func leftoverQEMU(mark string, grace time.Duration) []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	deadline := time.Now().Add(grace)
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			comm, err := os.ReadFile(p + "/comm")
			if err != nil || !strings.HasPrefix(string(comm), "qemu") {
				continue
			}
			env, err := os.ReadFile(p + "/environ")
			if err != nil || !bytes.Contains(env, []byte("\x00"+testMarkEnv+"="+mark+"\x00")) && !bytes.HasPrefix(env, []byte(testMarkEnv+"="+mark+"\x00")) {
				continue
			}
			cmdline, _ := os.ReadFile(p + "/cmdline")
			left = append(left, filepath.Base(p)+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}
