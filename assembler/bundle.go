package assembler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kilnproject/kiln/assembler/recipe"
)

// UpdateInfo is update/update.json: the metadata of one update payload (the UKI of this version),
// which the OTA server signs and serves and the device agent checks before installing.
type UpdateInfo struct {
	Name        string  `json:"name"`
	Version     string  `json:"version"`
	Arch        string  `json:"arch"`
	Board       string  `json:"board"`
	Channel     string  `json:"channel"`
	MinFrom     string  `json:"min_from"`
	MaxFrom     string  `json:"max_from"` // "": any version below Version
	HealthCheck string  `json:"health_check"`
	Payload     Payload `json:"payload"`
}

// Payload is the file an update installs.
type Payload struct {
	File   string `json:"file"` // name inside the update directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// UpdateFile is the name of the metadata file in an update bundle.
const UpdateFile = "update.json"

// Board names the hardware family an image is for: the architecture and the firmware interface.
func Board(r *recipe.Recipe) string { return r.Arch + "-" + r.Board.Firmware }

// writeBundle writes dir/<name>-<version>.efi (a copy of the UKI) and dir/update.json.
func writeBundle(dir string, r *recipe.Recipe, uki []byte, ukiSHA string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	name := ukiName(r)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, uki, 0o644); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	info := UpdateInfo{
		Name: r.Name, Version: r.Version, Arch: r.Arch, Board: Board(r), Channel: r.Update.Channel,
		MinFrom: r.Update.MinFrom, MaxFrom: r.Update.MaxFrom, HealthCheck: r.Update.HealthCheck,
		Payload: Payload{File: name, Size: int64(len(uki)), SHA256: ukiSHA},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(info); err != nil {
		return "", fmt.Errorf("encode %s: %w", UpdateFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, UpdateFile), buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	return path, nil
}

// LoadUpdateInfo reads an update bundle's update.json.
func LoadUpdateInfo(dir string) (*UpdateInfo, error) {
	data, err := os.ReadFile(filepath.Join(dir, UpdateFile))
	if err != nil {
		return nil, fmt.Errorf("read update bundle %s: %w", dir, err)
	}
	var u UpdateInfo
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("parse %s in %s: %w", UpdateFile, dir, err)
	}
	return &u, nil
}

// ukiName is the file name of a recipe's UKI, on the ESP under EFI/Linux and in the update bundle.
func ukiName(r *recipe.Recipe) string { return r.Name + "-" + r.Version + ".efi" }
