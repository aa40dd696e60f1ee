package recipe

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/kilnproject/kiln/internal/units"
)

// Size is a byte count written as a number with an optional unit: "512MiB", "1G", "4096", "0"
// (units.Size).
type Size = units.Size

// Common sizes.
const (
	KiB = units.KiB
	MiB = units.MiB
	GiB = units.GiB
	TiB = units.TiB
)

// ParseSize parses a size such as "512MiB", "1.5G" or "0".
func ParseSize(s string) (Size, error) { return units.ParseSize(s) }

// Mode is a file's permission bits (with setuid, setgid, sticky), written in octal: "0644" or 0o644.
type Mode uint32

// ParseMode parses an octal mode string: "0644", "644", "0o4755".
func ParseMode(s string) (Mode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	if v > 0o7777 {
		return 0, fmt.Errorf("mode %q has bits beyond 07777", s)
	}
	return Mode(v), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText writes the mode as a 4-digit octal string.
func (m Mode) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%04o", uint32(m))), nil }

// FileMode converts m to an fs.FileMode (permissions and the setuid, setgid and sticky bits).
func (m Mode) FileMode() fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// Perm returns the mode a File is placed with: Mode, or 0644 when unset.
func (f File) Perm() fs.FileMode {
	if f.Mode == 0 {
		return 0o644
	}
	return f.Mode.FileMode()
}
