package flasher

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
)

// windowsAnswers are one physical drive's IOCTL answers, the bytes DeviceIoControl returned (nil
// when the call failed). They are decoded on every platform, so the Windows safety rules are
// tested everywhere on recorded answers.
type windowsAnswers struct {
	Length   []byte // IOCTL_DISK_GET_LENGTH_INFO: GET_LENGTH_INFORMATION
	Geometry []byte // IOCTL_DISK_GET_DRIVE_GEOMETRY_EX: DISK_GEOMETRY_EX
	Storage  []byte // IOCTL_STORAGE_QUERY_PROPERTY, StorageDeviceProperty: STORAGE_DEVICE_DESCRIPTOR
	// WriteProtected: IOCTL_DISK_IS_WRITABLE failed with ERROR_WRITE_PROTECT.
	WriteProtected bool
}

// STORAGE_BUS_TYPE values and the transport names Kiln uses for them.
var busTypes = map[uint32]string{1: "scsi", 2: "atapi", 3: "ata", 4: "firewire", 6: "fibre", 7: "usb", 8: "raid",
	9: "iscsi", 0xa: "sas", 0xb: "sata", 0xc: "mmc", 0xd: "mmc", 0xe: "virtual", 0xf: "virtual", 0x10: "spaces",
	0x11: "nvme", 0x12: "scm", 0x13: "ufs"}

func winDrivePath(n int) string { return `\\.\PhysicalDrive` + strconv.Itoa(n) }

// windowsDrive describes physical drive n from its answers. volumes maps each drive letter ("E:")
// to the physical drives its volume spans (IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS); systemDrives are
// the letters Windows runs from (%SystemDrive%, the volume of %SystemRoot%).
func windowsDrive(n int, a windowsAnswers, volumes map[string][]int, systemDrives []string) Device {
	d := Device{Path: winDrivePath(n), Name: "PhysicalDrive" + strconv.Itoa(n), LogicalBlockSize: 512}
	if len(a.Length) >= 8 {
		if s := int64(binary.LittleEndian.Uint64(a.Length)); s > 0 {
			d.Size = s
		}
	}
	if len(a.Geometry) >= 24 {
		// DISK_GEOMETRY.BytesPerSector; only sizes a drive can have.
		if bs := binary.LittleEndian.Uint32(a.Geometry[20:]); bs >= 512 && bs <= 64<<10 && bs&(bs-1) == 0 {
			d.LogicalBlockSize = int(bs)
		}
	}
	if b := a.Storage; len(b) >= 32 {
		n := len(b)
		if size := int(binary.LittleEndian.Uint32(b[4:])); size >= 32 && size < n {
			n = size // the descriptor's own size bounds its strings
		}
		str := func(at int) string {
			off := int(binary.LittleEndian.Uint32(b[at:]))
			if off < 32 || off >= n {
				return ""
			}
			end := off
			for end < n && b[end] != 0 && end-off < 256 {
				end++
			}
			return strings.TrimSpace(strings.ToValidUTF8(string(b[off:end]), ""))
		}
		d.Removable = b[10] != 0
		d.Vendor, d.Model, d.Serial = str(12), str(16), str(24)
		bus := binary.LittleEndian.Uint32(b[28:])
		if t, ok := busTypes[bus]; ok {
			d.Transport = t
		} else {
			d.Transport = "bus-" + strconv.FormatUint(uint64(bus), 10)
		}
	}
	d.ReadOnly = a.WriteProtected
	d.Internal = !d.Removable && d.Transport != "usb" && d.Transport != "mmc" && d.Transport != "virtual"
	letters := make([]string, 0, len(volumes))
	for l := range volumes {
		letters = append(letters, l)
	}
	slices.Sort(letters)
	for _, l := range letters {
		for _, k := range volumes[l] {
			if k != n {
				continue
			}
			d.Mounts = append(d.Mounts, l+`\`)
			for _, s := range systemDrives {
				if !d.System && strings.EqualFold(strings.TrimRight(s, `\`), l) {
					d.System, d.SystemReason = true, "Windows runs from "+l
				}
			}
			break
		}
	}
	return d
}

// parseDiskExtents decodes VOLUME_DISK_EXTENTS into the physical drive numbers of a volume.
func parseDiskExtents(b []byte) []int {
	if len(b) < 8 {
		return nil
	}
	count := int(binary.LittleEndian.Uint32(b))
	var out []int
	for k := 0; k < count && 8+24*k+24 <= len(b); k++ {
		disk := int(binary.LittleEndian.Uint32(b[8+24*k:]))
		if !slices.Contains(out, disk) {
			out = append(out, disk)
		}
	}
	return out
}
