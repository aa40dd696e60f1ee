package disk

import (
	"encoding/binary"
	"fmt"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kilnproject/kiln/internal/bmap"
)

// writeGPT writes the protective MBR and both GPT copies.
func writeGPT(f *bmap.Recorder, l Layout, parts []*gpt.Partition) error {
	t := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		ProtectiveMBR:      true,
		GUID:               l.DiskGUID,
		Partitions:         parts,
	}
	if err := t.Write(f, l.Size); err != nil {
		return fmt.Errorf("write partition table: %w", err)
	}
	// go-diskfs leaves the protective entry's CHS fields zero and overflows its sector count above
	// 2 TiB; write the entry as the UEFI specification has it.
	e := make([]byte, 16)
	copy(e[1:4], []byte{0x00, 0x02, 0x00}) // CHS of LBA 1
	e[4] = 0xEE                            // GPT protective
	copy(e[5:8], []byte{0xFF, 0xFF, 0xFF}) // CHS beyond reach
	if l.BIOS != nil && l.BIOS.Active {
		e[0] = 0x80
	}
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(uint64(l.Size/SectorSize)-1, 0xFFFFFFFF)))
	if _, err := f.WriteAt(e, 446); err != nil {
		return fmt.Errorf("write protective MBR: %w", err)
	}
	return nil
}

// writeBIOSBoot puts the BIOS boot code into the MBR (before the disk signature) and the core
// image at the start of the BIOS boot partition.
func writeBIOSBoot(f *bmap.Recorder, b *BIOSBoot) error {
	if _, err := f.WriteAt(b.Code, 0); err != nil {
		return fmt.Errorf("write MBR boot code: %w", err)
	}
	if _, err := f.WriteAt(b.Core, BIOSBootLBA*SectorSize); err != nil {
		return fmt.Errorf("write BIOS boot partition: %w", err)
	}
	return nil
}
