package assembler

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/grub"
	"github.com/kilnproject/kiln/assembler/grub/grubenv"
	"github.com/kilnproject/kiln/assembler/iso"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/bmap"
)

// PhaseISO is the progress phase of writing the ISO image (after the disk image).
const PhaseISO = "iso"

// ISOInfo describes the ISO image in the manifest.
type ISOInfo struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Bmap   string `json:"bmap"`
	Mapped int64  `json:"mapped_bytes"`
	// The El Torito boot images (2048-byte blocks) and the hybrid MBR's EFI partition.
	BIOSBootLBA uint32 `json:"bios_boot_lba"`
	EFIBootLBA  uint32 `json:"efi_boot_lba"`
	EFIImage    int64  `json:"efi_image_size"`
	ReadOnly    bool   `json:"read_only"` // always: a device booted from the ISO takes no updates
}

// ISOName is the ISO image's file name for a recipe.
func ISOName(r *recipe.Recipe) string { return r.Name + ".iso" }

// Paths on the ISO (level 1 names; GRUB matches them without regard to case).
const (
	isoGRUBDir   = "BOOT/GRUB"
	isoBIOSImage = isoGRUBDir + "/ELTORITO.IMG" // cdboot.img + core image
	isoEFIImage  = "EFI/EFIBOOT.IMG"            // FAT32 EFI system partition image
	isoKernel    = "KILN/LINUX"
	isoInitrd    = "KILN/INITRD"
)

// isoScript is GRUB's script on the ISO: one read-only slot, so no environment block.
func isoScript(r *recipe.Recipe) []byte {
	return []byte(`# GRUB boot script of a Kiln ISO image, written by kiln.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
echo "kiln: booting ` + slotBase(r) + ` from the ISO image"
` + string(grubenv.LoadScript("/kiln", r.Kernel.Cmdline)) + "boot\n")
}

// volumeID is the ISO volume identifier: the name in upper case, other characters as '_'.
func volumeID(r *recipe.Recipe) string {
	id := []byte(strings.ToUpper(r.Name))
	for i, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			id[i] = '_'
		}
	}
	return string(id[:min(len(id), 32)])
}

// writeISO writes <name>.iso: BIOS boot through GRUB (cdboot.img for CDs, boot_hybrid.img in the
// MBR for USB sticks), UEFI boot through systemd-boot and the UKI in an ESP image, and the kernel
// and initramfs as files for GRUB.
func (b *builder) writeISO(ctx context.Context, ukiData, initrd []byte) error {
	r, in := b.r, &b.inputs
	b.phase(PhaseISO, "writing the ISO image", 0)
	esp := []fat.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: in.bootloader},
		{Path: "EFI/Linux/" + ukiName(r), Data: ukiData},
		{Path: "loader/loader.conf", Data: loaderConf(r)},
	}
	var need int64
	for _, f := range esp {
		need += int64(len(f.Data))
	}
	const mib = 1 << 20
	espSize := max(int64(recipe.MinFATPartition), (need+need/20+4*mib+mib-1)/mib*mib)
	mod := time.Unix(b.opts.SourceDateEpoch, 0).UTC()
	core := grub.Core{Modules: grub.Modules, Prefix: "/boot/grub"}
	g := in.grub
	// Its size does not depend on where it lands; the blocklist is filled in once it is placed.
	eltorito, err := g.CDCore(core, 0)
	if err != nil {
		return fmt.Errorf("GRUB El Torito image: %w", err)
	}
	files := []iso.File{
		{Path: isoGRUBDir + "/GRUB.CFG", Data: isoScript(r)},
		{Path: isoBIOSImage, Data: eltorito},
		{Path: isoEFIImage, Write: func(ctx context.Context, f *os.File) error {
			if err := f.Truncate(espSize); err != nil {
				return err
			}
			_, err := fat.Write(ctx, f, 0, espSize, esp, fat.Options{Label: "ESP", ModTime: mod,
				VolumeID: binary.LittleEndian.Uint32([]byte(stableGUID(r.Name, "iso-esp")[:4]))}, nil)
			return err
		}},
		{Path: isoKernel, Data: in.kernel.image},
		{Path: isoInitrd, Data: initrd},
	}
	sig := stableGUID(r.Name, "iso-mbr")
	out := b.st.path(ISOName(r))
	res, err := iso.Write(ctx, out, files, iso.Options{
		VolumeID: volumeID(r), ModTime: mod, BIOSBoot: isoBIOSImage, EFIBoot: isoEFIImage,
		// The core image's first sector as a disk sees it: the El Torito image's block × 4,
		// after cdboot.img's 2048 bytes.
		PatchBIOS:     func(lba uint32) ([]byte, error) { return g.CDCore(core, uint64(lba)*4+4) },
		MBRCode:       func(lba uint32) ([]byte, error) { return g.HybridBootSector(uint64(lba)*4 + 4) },
		DiskSignature: binary.LittleEndian.Uint32([]byte(sig[:4])),
		DiskGUID:      stableGUID(r.Name, "iso-gpt"), ESPGUID: stableGUID(r.Name, "iso-esp-partition"),
	})
	if err != nil {
		return err
	}
	info := &ISOInfo{File: ISOName(r), Size: res.Size, Bmap: ISOName(r) + ".bmap", BIOSBootLBA: res.BIOSBootLBA,
		EFIBootLBA: res.EFIBootLBA, EFIImage: res.EFIBootSize, ReadOnly: true}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := bmap.Create(f, BlockSize)
	if err != nil {
		return fmt.Errorf("ISO block map: %w", err)
	}
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out+".bmap", data, 0o644); err != nil {
		return fmt.Errorf("ISO block map: %w", err)
	}
	info.Mapped = m.MappedBytes()
	if info.SHA256, _, err = hashRanges(ctx, out, nil, nil, nil, b.prog); err != nil {
		return err
	}
	for _, f := range files {
		if f.Data != nil {
			if pf, ok := placed("iso:", f.Path, fileMode(false), f.Data, "", "kiln"); ok {
				b.manifest.Files = append(b.manifest.Files, pf)
			}
		}
	}
	b.manifest.ISO = info
	return nil
}
