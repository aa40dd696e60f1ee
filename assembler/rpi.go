package assembler

import (
	"archive/tar"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"path"
	"strings"
	"time"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assembler/rpiboot"
)

// Raspberry Pi images (board firmware "rpi"): the Pi's firmware from raspi-firmware boots the
// kernel from FAT boot slots of an MBR disk laid out by rpiboot for tryboot A/B.

// piAutobootSize is partition 1 (autoboot.txt, bootcode.bin): FAT32's minimum with room.
const piAutobootSize = 40 << 20

// piStubPackage holds the EFI stub of the UKI that is a Pi image's update payload, when the board
// names no boot loader package.
const piStubPackage = "systemd-boot-efi"

func isPi(r *recipe.Recipe) bool { return r.Board.Firmware == recipe.FirmwareRPi }

// readPiFirmware reads the firmware files from raspi-firmware (usr/lib/raspi-firmware/).
func (b *builder) readPiFirmware(ctx context.Context, pkg *deb.Package) error {
	fw := map[string][]byte{}
	const dir = "usr/lib/raspi-firmware/"
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, ok := strings.CutPrefix(strings.TrimPrefix(h.Name, "./"), dir)
		if !ok || strings.Contains(name, "/") || h.Typeflag != tar.TypeReg ||
			!(name == "bootcode.bin" || strings.HasPrefix(name, "start") || strings.HasPrefix(name, "fixup")) {
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(r, 64<<20))
		fw[name] = data
		return err
	})
	if err != nil {
		return fmt.Errorf("firmware %s: %w", pkg.Name, err)
	}
	if fw["start.elf"] == nil || fw["start4.elf"] == nil || fw["bootcode.bin"] == nil {
		return fmt.Errorf("firmware %s has no /%s{bootcode.bin,start.elf,start4.elf}: name Debian's raspi-firmware in the board's boot.firmware_package", pkg.Name, dir)
	}
	b.inputs.piFirmware, b.inputs.piOrigin = fw, pkg.Name+" "+pkg.Version
	return nil
}

// readPiDTBs reads the Raspberry Pi device trees (broadcom/bcm*-rpi-*.dtb) from the kernel
// package, as Debian's raspi-firmware hook copies them.
func (b *builder) readPiDTBs(ctx context.Context, pkg *deb.Package) error {
	dtbs := map[string][]byte{}
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Base(h.Name)
		if h.Typeflag != tar.TypeReg || path.Base(path.Dir(h.Name)) != "broadcom" ||
			!strings.HasPrefix(name, "bcm") || !strings.Contains(name, "-rpi-") || !strings.HasSuffix(name, ".dtb") {
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(r, 4<<20))
		dtbs[name] = data
		return err
	})
	if err != nil {
		return fmt.Errorf("kernel %s: device trees: %w", pkg.Name, err)
	}
	for _, want := range b.board.Kernel.DeviceTrees {
		// Debian's kernel names the Pi 3 family's trees bcm2837-* and the CM4's bcm2711-rpi-cm4-io.
		alt := strings.Replace(want, "bcm2710-", "bcm2837-", 1) + ".dtb"
		if dtbs[want+".dtb"] == nil && dtbs[alt] == nil && dtbs[want+"-io.dtb"] == nil {
			b.warn(fmt.Sprintf("kernel %s has no device tree %s.dtb (board %s)", pkg.Name, want, b.board.Name))
		}
	}
	if len(dtbs) == 0 {
		return fmt.Errorf("kernel %s has no Raspberry Pi device trees (broadcom/bcm*-rpi-*.dtb)", pkg.Name)
	}
	b.inputs.piDTBs = dtbs
	return nil
}

// writePiImage writes the Pi image: autoboot partition, boot slot A with the kernel, initramfs,
// firmware and device trees, an empty slot B the size of A, and the data partition.
func (b *builder) writePiImage(ctx context.Context, img string, initrd []byte) error {
	r, in := b.r, &b.inputs
	l := r.Board.Layout()
	parts, err := rpiboot.Parts(rpiboot.SlotInput{Firmware: in.piFirmware, DeviceTrees: in.piDTBs,
		Kernel: in.kernel.image, Initramfs: initrd, Cmdline: r.Kernel.Cmdline},
		piAutobootSize, l.ESPSize, rpiboot.Part{Type: rpiboot.TypeFAT32, Label: r.Data.Label, Files: in.data})
	if err != nil {
		return err
	}
	h := fnv.New32a()
	h.Write([]byte(r.Name))
	sig := h.Sum32()
	b.phase(PhaseDisk, "writing the disk image", l.DiskSize)
	res, written, err := rpiboot.WriteImage(ctx, img, l.DiskSize, sig, parts, time.Unix(b.opts.SourceDateEpoch, 0).UTC(), b.prog)
	if err != nil {
		return err
	}
	b.written = written
	b.manifest.Image = ImageInfo{File: ImageName(r), Size: l.DiskSize, Arch: r.Arch, DiskGUID: fmt.Sprintf("%08x", sig),
		Bmap: ImageName(r) + ".bmap"}
	names := []string{"autoboot", "boot-a", "boot-b", "data"}
	for i, p := range res {
		b.manifest.Partitions = append(b.manifest.Partitions, Partition{Number: p.Number, Name: names[i], Label: parts[i].Label,
			Type: names[i], FS: "fat32", Offset: p.Start, Size: p.Size})
		if i > 1 {
			continue
		}
		origin := map[string]string{"config.txt": "kiln:config.txt", "cmdline.txt": "kiln:cmdline.txt",
			rpiboot.AutobootFile: "kiln:autoboot.txt", rpiboot.KernelFile: "kernel", rpiboot.InitrdFile: "kiln:initramfs"}
		for _, f := range parts[i].Files {
			o := origin[f.Path]
			if o == "" && in.piDTBs[f.Path] != nil {
				o = "kernel device tree"
			} else if o == "" {
				o = in.piOrigin
			}
			if pf, ok := placed(names[i]+":", f.Path, fileMode(f.Dir), f.Data, "", o); ok {
				b.manifest.Files = append(b.manifest.Files, pf)
			}
		}
	}
	return nil
}
