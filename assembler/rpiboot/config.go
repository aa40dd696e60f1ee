package rpiboot

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MaxConfig bounds the config.txt a reader accepts.
const MaxConfig = 64 << 10

// Boot is what config.txt tells the firmware to load for one model.
type Boot struct {
	Kernel     string // kernel=, default kernel8.img (arm_64bit)
	Initramfs  string // initramfs <file> followkernel
	DeviceTree string // device_tree=, "" for the firmware's default for the model
	Cmdline    string // cmdline=, default cmdline.txt
}

// ParseConfig reads config.txt for model, a section filter such as "pi3" or "pi4": lines under
// [all] and [model] apply, lines under other filters do not ([none] and [tryboot] included).
// Later lines override earlier ones, as in the firmware.
func ParseConfig(data []byte, model string) (Boot, error) {
	if len(data) > MaxConfig {
		return Boot{}, fmt.Errorf("config.txt: %d bytes, more than %d", len(data), MaxConfig)
	}
	b := Boot{Kernel: "kernel8.img", Cmdline: "cmdline.txt"}
	on := true
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxConfig+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			s := strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			on = s == "all" || s == model
			continue
		}
		if !on {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "initramfs"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			f := strings.Fields(rest)
			if len(f) > 0 {
				b.Initramfs = f[0]
			}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue // the firmware skips what it does not understand
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(key) {
		case "kernel":
			b.Kernel = val
		case "device_tree":
			b.DeviceTree = val
		case "cmdline":
			b.Cmdline = val
		}
	}
	if err := sc.Err(); err != nil {
		return Boot{}, fmt.Errorf("config.txt: %w", err)
	}
	for _, f := range []string{b.Kernel, b.Initramfs, b.DeviceTree, b.Cmdline} {
		if strings.Contains(f, "..") || strings.ContainsAny(f, "\\\x00") || len(f) > 255 {
			return Boot{}, fmt.Errorf("config.txt: file name %q is not a file of the boot partition", clip(f))
		}
	}
	return b, nil
}
