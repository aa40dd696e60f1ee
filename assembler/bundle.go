package assembler

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/ota"
)

// Board names the hardware family an image is for: the architecture and the firmware interface.
func Board(r *recipe.Recipe) string { return r.Arch + "-" + r.Board.Firmware }

// writeBundle writes dir/<name>-<version>.efi (a copy of the UKI), for a package image
// dir/<name>-<version>.root (the root filesystem image, ota.Bundle.Root), and dir/update.json
// (ota.Bundle).
func writeBundle(dir string, r *recipe.Recipe, uki []byte, ukiSHA string, root *rootImage) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	name := ukiName(r)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, uki, 0o644); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	info := ota.Bundle{
		Name: r.Name, Version: r.Version, Arch: r.Arch, Board: Board(r), Channel: r.Update.Channel,
		MinFrom: r.Update.MinFrom, MaxFrom: r.Update.MaxFrom, HealthCheck: r.Update.HealthCheck,
		Payload: ota.Payload{File: name, Size: int64(len(uki)), SHA256: ukiSHA},
	}
	if root != nil {
		if err := os.WriteFile(filepath.Join(dir, rootName(r)), root.data, 0o644); err != nil {
			return "", fmt.Errorf("write update bundle: %w", err)
		}
		info.Root = &ota.Payload{File: rootName(r), Size: int64(len(root.data)), SHA256: root.sha256}
	}
	data, err := info.Encode()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ota.BundleFile), data, 0o644); err != nil {
		return "", fmt.Errorf("write update bundle: %w", err)
	}
	return path, nil
}

// ukiName is the file name of a recipe's UKI, on the ESP under EFI/Linux and in the update bundle.
func ukiName(r *recipe.Recipe) string { return r.Name + "-" + r.Version + ".efi" }
