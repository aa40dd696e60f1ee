package assembler

import (
	"context"
	"fmt"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/disk"
	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/grub"
	"github.com/kilnproject/kiln/assembler/grub/grubenv"
	"github.com/kilnproject/kiln/assembler/recipe"
)

// Legacy BIOS boot: GRUB's boot.img in the MBR loads a core image from the BIOS boot partition;
// the core image finds its script on the ESP ($prefix (,gpt1)/grub), which boots the kernel and
// initramfs of the slot grubenv names (kiln/<name>-<version>/). The kiln-agent keeps those slots
// and grubenv in step with the unified kernel images in EFI/Linux, which stay the update format.

// biosBootName is the GPT name of the BIOS boot partition.
const biosBootName = "BIOS boot"

// espPrefix is GRUB's $prefix on a disk: the ESP (GPT entry 1) of the boot drive.
const espPrefix = "(,gpt1)/grub"

// needGRUB tells whether a build reads the GRUB package: for BIOS boot and for the ISO's BIOS
// boot entry.
func needGRUB(r *recipe.Recipe) bool { return r.Board.BIOS() || r.Outputs.ISO }

// readGRUB reads GRUB's i386-pc files.
func (b *builder) readGRUB(ctx context.Context, pkg *deb.Package) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := grub.FromDeb(pkg)
	if err != nil {
		return err
	}
	b.inputs.grub = f
	return nil
}

// slotBase is the name of the image's boot slot: "<name>-<version>", as its UKI without ".efi".
func slotBase(r *recipe.Recipe) string { return r.Name + "-" + r.Version }

// biosESPFiles are the ESP files GRUB boots from: its script, the environment block naming the
// image's slot as the default, and the slot's kernel, initramfs and boot.cfg.
func (b *builder) biosESPFiles(initrd []byte) ([]fat.File, error) {
	r := b.r
	env, err := grubenv.Encode(grubenv.Env{grubenv.VarDefault: slotBase(r), grubenv.VarTrial: "", grubenv.VarTries: "0"})
	if err != nil {
		return nil, err
	}
	dir := grubenv.SlotDir + "/" + slotBase(r) + "/"
	files := []fat.File{
		{Path: grubenv.ConfigPath, Data: grub.Script()},
		{Path: grubenv.EnvPath, Data: env},
		{Path: dir + "boot.cfg", Data: grubenv.SlotScript(slotBase(r), r.Kernel.Cmdline)},
		{Path: dir + "initrd", Data: initrd},
		{Path: dir + "linux", Data: b.inputs.kernel.image},
	}
	origin := map[string]string{
		grubenv.ConfigPath: "kiln:grub.cfg", grubenv.EnvPath: "kiln:grubenv", dir + "boot.cfg": "kiln:boot.cfg",
		dir + "initrd": "kiln:initramfs", dir + "linux": "kernel",
	}
	for _, f := range files {
		if pf, ok := placed("esp:", f.Path, fileMode(false), f.Data, "", origin[f.Path]); ok {
			b.manifest.Files = append(b.manifest.Files, pf)
		}
	}
	return files, nil
}

// biosBoot is the disk's BIOS boot code: boot.img and a core image in the BIOS boot partition.
func (b *builder) biosBoot() (*disk.BIOSBoot, error) {
	g := b.inputs.grub
	core, err := g.DiskCore(grub.Core{Modules: grub.Modules, Prefix: espPrefix}, disk.BIOSBootLBA)
	if err != nil {
		return nil, fmt.Errorf("GRUB core image: %w", err)
	}
	code, err := g.BootSector(disk.BIOSBootLBA)
	if err != nil {
		return nil, fmt.Errorf("GRUB boot sector: %w", err)
	}
	b.manifest.Files = append(b.manifest.Files,
		PlacedFile{Path: "mbr:boot.img", Mode: "0644", Size: int64(len(code)), SHA256: sha256Hex(code), Origin: g.Origin},
		PlacedFile{Path: "bios-boot:core.img", Mode: "0644", Size: int64(len(core)), SHA256: sha256Hex(core), Origin: g.Origin})
	return &disk.BIOSBoot{Code: code, Core: core, Name: biosBootName, GUID: stableGUID(b.r.Name, "bios-boot"),
		Active: !b.r.Board.UEFI()}, nil
}
