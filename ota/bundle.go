package ota

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// BundleFile is the name of the metadata file in an update bundle (a build's update/ directory).
const BundleFile = "update.json"

// Bundle is update.json in a build's update/ directory, next to the payload it describes: what
// the assembler writes, kiln publish signs and the app lists.
type Bundle struct {
	Name        string  `json:"name"`
	Version     string  `json:"version"`
	Arch        string  `json:"arch"`
	Board       string  `json:"board"`
	Channel     string  `json:"channel"`
	MinFrom     string  `json:"min_from"`
	MaxFrom     string  `json:"max_from"` // "": any version below Version
	HealthCheck string  `json:"health_check"`
	Payload     Payload `json:"payload"`
	// Root is the read-only root filesystem image of a package image, written into the spare
	// root partition (RootSlotA or RootSlotB) before the kernel image that mounts it.
	Root *Payload `json:"root,omitempty"`
}

// The GPT partition names of a package image's A/B root partitions. A kernel image finds its
// root by content, not by slot, so an update writes the root into whichever slot is spare.
const (
	RootSlotA = "root-a"
	RootSlotB = "root-b"
)

// RunningRootFile holds the GPT partition name of the slot the running system's root was
// mounted from; the image's init writes it, and the agent never writes into that slot.
const RunningRootFile = "/run/kiln/root"

// Payload names the bundle's file (relative to the bundle directory) with its size and sha256.
type Payload struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// maxBundleFile bounds update.json; real ones are a few hundred bytes.
const maxBundleFile = 1 << 20

// LoadBundle reads and decodes dir/update.json; it checks no field (kiln publish does).
func LoadBundle(dir string) (*Bundle, error) {
	p := filepath.Join(dir, BundleFile)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read update bundle: %w", err)
	}
	if fi.Size() > maxBundleFile {
		return nil, fmt.Errorf("read update bundle %s: larger than %d bytes", p, maxBundleFile)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read update bundle: %w", err)
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("read update bundle %s: %w", p, err)
	}
	return &b, nil
}

// Encode returns b as update.json holds it (indented JSON).
func (b *Bundle) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("encode %s: %w", BundleFile, err)
	}
	return buf.Bytes(), nil
}
