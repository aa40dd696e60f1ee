package assembler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// ManifestFormat is the version of manifest.json's layout.
const ManifestFormat = 1

// Manifest is manifest.json: what went into an image and what came out, each with its sha256, so a
// build can be audited and reproduced. It holds no absolute paths of the build machine other than
// those a recipe names, so two builds with the same inputs and SOURCE_DATE_EPOCH write the same
// bytes.
type Manifest struct {
	Format          int       `json:"format"`
	Kiln            string    `json:"kiln"` // the kiln version that built the image
	Name            string    `json:"name"`
	Version         string    `json:"version"`
	Arch            string    `json:"arch"`
	Board           BoardInfo `json:"board"`
	SourceDateEpoch int64     `json:"source_date_epoch"`
	Recipe          RecipeRef `json:"recipe"`
	Inputs          []Input   `json:"inputs"`
	// Packages are the Debian packages installed into the root filesystem, sorted by name.
	Packages   []PackageInfo `json:"packages,omitempty"`
	Image      ImageInfo     `json:"image"`
	Partitions []Partition   `json:"partitions"`
	UKI        UKIInfo       `json:"uki"`
	Files      []PlacedFile  `json:"files"`
	ISO        *ISOInfo      `json:"iso,omitempty"` // [outputs] iso
	// Root is the read-only root filesystem of a package image (partition root-a).
	Root *RootInfo `json:"root,omitempty"`
}

// RootInfo describes the root filesystem image: its file in the update bundle, its id (on the
// UKI's command line as kiln.root=<id> and in the root's /etc/kiln/root-id) and checksum.
type RootInfo struct {
	File   string `json:"file"`
	FS     string `json:"fs"` // "erofs"
	ID     string `json:"id"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// BoardInfo names the board an image was built for.
type BoardInfo struct {
	Name     string `json:"name"`              // "pc", "arm64-uefi", "rpi", or a board file's name
	Firmware string `json:"firmware"`          // uefi, bios, hybrid or rpi
	Machine  string `json:"machine,omitempty"` // QEMU machine that previews it (q35, virt, raspi3b)
}

// PreviewMachine returns the QEMU machine that previews image, from the manifest.json beside it
// (the board's preview machine, else the default for the manifest's arch), or "" when there is
// no manifest of that image.
func PreviewMachine(image string) string {
	m, err := LoadManifest(filepath.Join(filepath.Dir(image), "manifest.json"))
	if err != nil || m.Image.File != filepath.Base(image) {
		return ""
	}
	if m.Board.Machine != "" {
		return m.Board.Machine
	}
	if m.Arch == "aarch64" {
		return "virt"
	}
	return ""
}

// RecipeRef identifies the recipe an image was built from.
type RecipeRef struct {
	Path   string `json:"path"` // as given to kiln; "builtin:kiln.toml" for the default recipe
	SHA256 string `json:"sha256"`
}

// Input is one thing the build read: a package, a file, a directory or the agent binary.
type Input struct {
	Role    string `json:"role"`              // kernel, busybox, bootloader, agent, file, overlay …
	Package string `json:"package,omitempty"` // Debian package name, when from a .deb
	Version string `json:"version,omitempty"` // its version
	Via     string `json:"via,omitempty"`     // the metapackage the recipe named, if any ("linux-image-amd64 6.1.192-2")
	Path    string `json:"path"`              // where it was read: a recipe path, or the .deb file name in the cache
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// ImageInfo describes the disk image.
type ImageInfo struct {
	File     string `json:"file"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Arch     string `json:"arch"`
	DiskGUID string `json:"disk_guid"`
	Bmap     string `json:"bmap"`
	Mapped   int64  `json:"mapped_bytes"` // bytes holding data (the rest are holes)
}

// Partition is one GPT partition of the image.
type Partition struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Label  string `json:"label"`
	Type   string `json:"type"` // esp | data
	GUID   string `json:"guid"`
	FS     string `json:"fs"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// UKIInfo describes the unified kernel image and its PE sections.
type UKIInfo struct {
	File     string       `json:"file"` // path on the ESP
	Size     int64        `json:"size"`
	SHA256   string       `json:"sha256"`
	Uname    string       `json:"uname"`
	Sections []UKISection `json:"sections"`
}

// UKISection is one PE section of the UKI (.linux, .initrd, .cmdline, .osrel, .uname …).
type UKISection struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// PlacedFile is one regular file or symlink placed in the image. Path is prefixed by where it lives:
// "initramfs:/usr/bin/kiln-agent", "esp:/EFI/BOOT/BOOTX64.EFI", "data:/README".
type PlacedFile struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // regular files
	Target string `json:"target,omitempty"` // symlinks
	Origin string `json:"origin"`
}

// Marshal encodes m as indented JSON with a final newline, files and inputs in a stable order.
func (m *Manifest) Marshal() ([]byte, error) {
	sort.SliceStable(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// maxManifest bounds the manifest.json LoadManifest reads (a manifest lists every file of an image).
const maxManifest = 64 << 20

// LoadManifest reads a manifest.json written by Build.
func LoadManifest(path string) (*Manifest, error) {
	data, err := fstree.ReadFile(path, maxManifest)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", path, err)
	}
	return &m, nil
}
