package agent

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf16"
)

// systemd-boot's vendor GUID for its EFI variables (Boot Loader Interface).
const loaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// Entry is a unified kernel image in EFI/Linux with its boot-counting state, as in systemd's
// Automatic Boot Assessment: "<base>+LEFT-DONE.efi" is on trial with LEFT tries left and DONE
// tries used; "<base>.efi" is blessed (known good). systemd-boot decrements LEFT on each boot
// attempt and sorts entries with no tries left after all others, so the previous version boots
// once the new one has used its tries.
type Entry struct {
	File    string // file name in EFI/Linux
	Base    string // name without counter and extension, e.g. "kiln-tiny-1.1.0"
	Counted bool   // has a boot counter (on trial)
	Left    int
	Done    int
}

// ParseEntry parses a UKI file name.
func ParseEntry(file string) (Entry, bool) {
	stem, ok := strings.CutSuffix(file, ".efi")
	if !ok || stem == "" || strings.HasPrefix(file, ".") {
		return Entry{}, false
	}
	e := Entry{File: file, Base: stem}
	i := strings.LastIndexByte(stem, '+')
	if i < 0 {
		return e, true
	}
	counter := stem[i+1:]
	left, done, hasDone := strings.Cut(counter, "-")
	l, err1 := strconv.Atoi(left)
	d, err2 := 0, error(nil)
	if hasDone {
		d, err2 = strconv.Atoi(done)
	}
	if err1 != nil || err2 != nil || l < 0 || d < 0 || left == "" {
		return e, true // a '+' that is not a counter belongs to the name
	}
	e.Base, e.Counted, e.Left, e.Done = stem[:i], true, l, d
	return e, true
}

// TrialName is the file name of a new entry with tries boot attempts: "<base>+<tries>.efi".
func TrialName(base string, tries int) string {
	return fmt.Sprintf("%s+%d.efi", base, tries)
}

// entries lists the UKIs in dir.
func entries(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if de.Type().IsRegular() {
			if e, ok := ParseEntry(de.Name()); ok {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// readEFIString reads a UTF-16LE string EFI variable from efivarfs (4 attribute bytes first).
func readEFIString(efivars, name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(efivars, name+"-"+loaderGUID))
	if err != nil {
		return "", err
	}
	if len(data) < 4 {
		return "", fmt.Errorf("EFI variable %s: too short", name)
	}
	data = data[4:]
	u := make([]uint16, 0, len(data)/2)
	for i := 0; i+1 < len(data); i += 2 {
		c := binary.LittleEndian.Uint16(data[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// bootCountFile returns the file name of the entry systemd-boot booted with a counter, from
// LoaderBootCountPath ("\EFI\Linux\kiln-tiny-1.1.0+2-1.efi"); "" when the boot was not counted.
func bootCountFile(efivars string) string {
	p, err := readEFIString(efivars, "LoaderBootCountPath")
	if err != nil || p == "" {
		return ""
	}
	p = strings.ReplaceAll(p, `\`, "/")
	return filepath.Base(p)
}
