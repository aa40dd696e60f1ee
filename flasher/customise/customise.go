package customise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// Customiser writes Settings into images as they are flashed; it is what flasher.Options.Customise
// takes. It is safe for concurrent use (one image per drive).
type Customiser struct {
	s Settings
}

// New checks the settings and returns a Customiser for them.
func New(s Settings) (*Customiser, error) {
	if s.Empty() {
		return nil, errors.New("customise: no settings given")
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("customise: %w", err)
	}
	return &Customiser{s: s}, nil
}

// Locate finds the boot FAT partition in the image's first bytes. An image without one is written
// unchanged: n is 0 and note says why.
func (c *Customiser) Locate(head []byte) (off, n int64, note string, err error) {
	if f := c.s.Format; f == FormatNone {
		return 0, 0, formatNote(f), nil
	}
	p, err := Locate(head)
	if err != nil {
		return 0, 0, fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: %v", err), nil
	}
	return p.Offset, p.Size, "", nil
}

// Apply writes the settings into the FAT file system held in part (size bytes). An unsupported file
// system or an image that does not use cloud-init is left unchanged (changed false, note says why);
// an error means part may be half changed.
func (c *Customiser) Apply(ctx context.Context, part *os.File, size int64) (changed bool, note string, err error) {
	v, err := checkFAT(part, size)
	if err != nil {
		return false, fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: %v", err), nil
	}
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("customise the boot partition: the file system library failed: %v", r)
		}
	}()
	fsys, err := openFAT(part, size, v)
	if err != nil {
		return false, fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: %v", err), nil
	}
	format, why := Detect(fsys, v.label, c.s.Format)
	if format == "" {
		return false, why, nil
	}
	if format == FormatSystemd {
		return c.applyFirstrun(fsys, part, v, why)
	}
	files, err := Render(c.s, format)
	if err != nil {
		return false, "", err
	}
	var names []string
	for _, w := range []struct {
		name string
		data []byte
	}{{"user-data", files.UserData}, {"network-config", files.NetworkConfig}, {"meta-data", files.MetaData}} {
		if w.data == nil {
			continue
		}
		if err := writeFile(fsys, w.name, w.data); err != nil {
			return true, "", fmt.Errorf("customise the boot partition: write %s: %w", w.name, err)
		}
		names = append(names, w.name)
	}
	if err := fixFSInfo(part, v); err != nil {
		return true, "", fmt.Errorf("customise the boot partition: %w", err)
	}
	return true, fmt.Sprintf("first-boot settings written for %s (%s): %s", format, why, strings.Join(names, ", ")), nil
}

// applyFirstrun writes firstrun.sh and the cmdline.txt arguments that run it once (Raspberry Pi
// Imager's systemd format).
func (c *Customiser) applyFirstrun(fsys fatFS, part *os.File, v *volume, why string) (bool, string, error) {
	script, err := RenderFirstrun(c.s)
	if err != nil {
		return false, "", fmt.Errorf("customise: %w", err)
	}
	f, err := fsys.Open("cmdline.txt")
	if err != nil {
		return false, fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: init format systemd needs cmdline.txt on the boot partition: %v", err), nil
	}
	old, err := io.ReadAll(io.LimitReader(f, 64<<10))
	f.Close()
	if err != nil {
		return false, "", fmt.Errorf("customise the boot partition: read cmdline.txt: %w", err)
	}
	cmdline, err := withFirstrun(old)
	if err != nil {
		return false, fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: %v", err), nil
	}
	if err := writeFile(fsys, firstrunFile, script); err != nil {
		return true, "", fmt.Errorf("customise the boot partition: write %s: %w", firstrunFile, err)
	}
	if err := writeFile(fsys, "cmdline.txt", cmdline); err != nil {
		return true, "", fmt.Errorf("customise the boot partition: write cmdline.txt: %w", err)
	}
	if err := fixFSInfo(part, v); err != nil {
		return true, "", fmt.Errorf("customise the boot partition: %w", err)
	}
	return true, fmt.Sprintf("first-boot settings written for systemd (%s): %s, cmdline.txt runs it once", why, firstrunFile), nil
}

func writeFile(fsys fatFS, name string, data []byte) error {
	f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Detect decides the image's first-boot format from the declared one or from its boot partition's
// files and label. It returns "" and a note saying why when Kiln cannot write settings, else the
// format and how it was found.
func Detect(fsys fs.ReadDirFS, label, declared string) (format, why string) {
	switch declared {
	case FormatCloudInit, FormatCloudInitRPi, FormatSystemd:
		return declared, "declared by the catalogue"
	case FormatNone:
		return "", formatNote(declared)
	}
	ents, err := fsys.ReadDir(".")
	if err != nil {
		return "", fmt.Sprintf("first-boot settings not written, the image is flashed unchanged: its boot partition cannot be listed: %v", err)
	}
	has := map[string]bool{}
	for _, e := range ents {
		has[strings.ToLower(e.Name())] = !e.IsDir()
	}
	cloud := has["user-data"] || has["network-config"] || has["meta-data"]
	rpi := has["issue.txt"] && strings.Contains(readSmall(fsys, "issue.txt"), "Raspberry Pi")
	switch {
	case cloud && rpi:
		return FormatCloudInitRPi, "Raspberry Pi OS with cloud-init files on its boot partition"
	case cloud:
		return FormatCloudInit, "cloud-init files on its boot partition"
	case strings.EqualFold(label, "cidata"):
		return FormatCloudInit, "a NoCloud seed labelled CIDATA"
	case has["cmdline.txt"] && rpi:
		return FormatSystemd, "Raspberry Pi OS before Trixie: cmdline.txt and no cloud-init files"
	}
	return "", "first-boot settings not written, the image is flashed unchanged: its boot partition holds no cloud-init files (user-data, network-config, meta-data) and is no NoCloud seed (label CIDATA); if the image does use cloud-init, give --init-format cloudinit"
}

func formatNote(string) string {
	return "first-boot settings not written, the image is flashed unchanged: the catalogue says it takes no first-boot settings (init format none)"
}

// readSmall returns up to 4 KiB of a file, "" on any error.
func readSmall(fsys fs.FS, name string) string {
	f, err := fsys.Open(name)
	if err != nil {
		f, err = fsys.Open("/" + name)
		if err != nil {
			return ""
		}
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(b)
}
