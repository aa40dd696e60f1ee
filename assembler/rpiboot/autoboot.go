// Package rpiboot holds the Raspberry Pi firmware's boot files: autoboot.txt, which picks the
// boot partition and the partition of a one-shot trial boot (tryboot A/B), and the boot
// partitions' config.txt and cmdline.txt.
package rpiboot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AutobootFile is autoboot.txt's name on the first FAT partition.
const AutobootFile = "autoboot.txt"

// MaxAutoboot is the firmware's limit on autoboot.txt.
const MaxAutoboot = 512

// ErrAutoboot: autoboot.txt does not describe a tryboot A/B pair.
var ErrAutoboot = errors.New("autoboot.txt")

// Autoboot is autoboot.txt for tryboot A/B: the firmware boots Boot ([all] boot_partition);
// after a reboot with the tryboot flag ("reboot '0 tryboot'") it boots Try ([tryboot]
// boot_partition) once, clearing the flag, so any later reset comes back to Boot.
type Autoboot struct {
	Boot int
	Try  int
}

// Encode writes the file.
func (a Autoboot) Encode() []byte {
	return fmt.Appendf(nil, "[all]\ntryboot_a_b=1\nboot_partition=%d\n[tryboot]\nboot_partition=%d\n", a.Boot, a.Try)
}

// Other is the slot that is not p.
func (a Autoboot) Other(p int) int {
	if p == a.Boot {
		return a.Try
	}
	return a.Boot
}

// ParseAutoboot reads autoboot.txt as the firmware does: "[filter]" lines start a section
// ([all] and [tryboot] apply; keys under [none] or other filters are ignored),
// '#' starts a comment, other lines are "key=value". It fails unless tryboot_a_b=1 and both
// boot partitions are set, as Kiln writes it.
func ParseAutoboot(data []byte) (Autoboot, error) {
	if len(data) > MaxAutoboot {
		return Autoboot{}, fmt.Errorf("%w: %d bytes, more than %d", ErrAutoboot, len(data), MaxAutoboot)
	}
	var a Autoboot
	ab := false
	section := "all"
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return Autoboot{}, fmt.Errorf("%w: line %d: %q is not key=value", ErrAutoboot, n, clip(line))
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if section != "all" && section != "tryboot" {
			continue
		}
		switch key {
		case "tryboot_a_b":
			ab = val == "1"
		case "boot_partition":
			p, err := strconv.Atoi(val)
			if err != nil || p < 1 || p > 127 {
				return Autoboot{}, fmt.Errorf("%w: line %d: boot_partition %q is not a partition number", ErrAutoboot, n, clip(val))
			}
			if section == "all" {
				a.Boot = p
			} else {
				a.Try = p
			}
		}
	}
	switch {
	case !ab:
		return Autoboot{}, fmt.Errorf("%w: no tryboot_a_b=1 in [all]", ErrAutoboot)
	case a.Boot == 0:
		return Autoboot{}, fmt.Errorf("%w: no boot_partition in [all]", ErrAutoboot)
	case a.Try == 0:
		return Autoboot{}, fmt.Errorf("%w: no boot_partition in [tryboot]", ErrAutoboot)
	}
	return a, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
