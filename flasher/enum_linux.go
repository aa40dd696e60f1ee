package flasher

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysfs is where Linux enumeration looks; tests point it at a fake tree.
type sysfs struct {
	sys, proc, dev string
	udev           string // udev's database of probed devices (/run/udev/data)
	// devnum returns "major:minor" of the block device a path is, or holds (for a regular file).
	devnum func(path string) (string, error)
}

var hostSys = sysfs{sys: "/sys", proc: "/proc", dev: "/dev", udev: "/run/udev/data", devnum: statDevnum}

func statDevnum(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	dev := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		dev = st.Rdev
	}
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)), nil
}

func (s sysfs) read(parts ...string) string {
	b, err := os.ReadFile(filepath.Join(append([]string{s.sys}, parts...)...))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// nameOf maps "major:minor" to the kernel name of the block device ("sda2", "dm-0").
func (s sysfs) nameOf(majmin string) string {
	link, err := os.Readlink(filepath.Join(s.sys, "dev", "block", majmin))
	if err != nil {
		return ""
	}
	return filepath.Base(link)
}

// classPath is the sysfs directory of any block device or partition by name.
func (s sysfs) classPath(name string) string { return filepath.Join(s.sys, "class", "block", name) }

// isPartition reports whether name is a partition, and its parent disk.
func (s sysfs) isPartition(name string) (bool, string) {
	p := s.classPath(name)
	if _, err := os.Stat(filepath.Join(p, "partition")); err != nil {
		return false, ""
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return true, ""
	}
	return true, filepath.Base(filepath.Dir(real))
}

// mounts maps kernel device names to their mountpoints (and "[swap]").
func (s sysfs) mounts() (map[string][]string, error) {
	out := map[string][]string{}
	f, err := os.Open(filepath.Join(s.proc, "self", "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			continue
		}
		mp := unescapeMount(fields[4])
		name := ""
		if !strings.HasPrefix(fields[2], "0:") {
			name = s.nameOf(fields[2])
		}
		if src := unescapeMount(fields[sep+2]); name == "" && strings.HasPrefix(src, "/dev/") && s.devnum != nil {
			if mm, err := s.devnum(src); err == nil {
				name = s.nameOf(mm)
			}
		}
		if name != "" {
			out[name] = append(out[name], mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(s.proc, "swaps")); err == nil {
		for i, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if i == 0 || len(fields) == 0 || s.devnum == nil {
				continue
			}
			if mm, err := s.devnum(unescapeMount(fields[0])); err == nil {
				if name := s.nameOf(mm); name != "" {
					out[name] = append(out[name], "[swap]")
				}
			}
		}
	}
	return out, nil
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tree returns name, its partitions and, recursively, everything stacked on them (dm, md, LVM).
func (s sysfs) tree(name string) []string {
	seen := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		p := s.classPath(n)
		if ents, err := os.ReadDir(p); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), n) {
					if _, err := os.Stat(filepath.Join(p, e.Name(), "partition")); err == nil {
						walk(e.Name())
					}
				}
			}
		}
		if ents, err := os.ReadDir(filepath.Join(p, "holders")); err == nil {
			for _, e := range ents {
				walk(e.Name())
			}
		}
	}
	walk(name)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// disksUnder returns the whole disks a device sits on: itself for a disk, its parent for a
// partition, and the disks under its slaves for dm/md/LVM devices (and a loop's backing file).
func (s sysfs) disksUnder(name string, seen map[string]bool) []string {
	if name == "" || seen[name] {
		return nil
	}
	seen[name] = true
	if part, parent := s.isPartition(name); part {
		return s.disksUnder(parent, seen)
	}
	var out []string
	if ents, err := os.ReadDir(filepath.Join(s.classPath(name), "slaves")); err == nil && len(ents) > 0 {
		for _, e := range ents {
			out = append(out, s.disksUnder(e.Name(), seen)...)
		}
		return out
	}
	out = append(out, name)
	if bf := s.read("block", name, "loop", "backing_file"); bf != "" && s.devnum != nil {
		if mm, err := s.devnum(bf); err == nil {
			out = append(out, s.disksUnder(s.nameOf(mm), seen)...)
		}
	}
	return out
}

// diskOfFile returns the whole disks holding a file.
func (s sysfs) diskOfFile(path string) ([]string, error) {
	mm, err := s.devnum(path)
	if err != nil {
		return nil, err
	}
	name := s.nameOf(mm)
	if name == "" {
		// An anonymous device (btrfs, overlay): find its mount's source.
		return s.diskOfAnonymous(mm)
	}
	return s.disksUnder(name, map[string]bool{}), nil
}

func (s sysfs) diskOfAnonymous(majmin string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(s.proc, "self", "mountinfo"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 || fields[2] != majmin {
			continue
		}
		for i := 6; i+2 < len(fields); i++ {
			if fields[i] == "-" {
				if src := unescapeMount(fields[i+2]); strings.HasPrefix(src, "/dev/") {
					if mm, err := s.devnum(src); err == nil {
						out = append(out, s.disksUnder(s.nameOf(mm), map[string]bool{})...)
					}
				}
				break
			}
		}
	}
	return out, nil
}

// skipDisk reports kernel devices that are never flash targets.
func skipDisk(name string) bool {
	for _, p := range []string{"ram", "zram", "dm-", "md", "sr", "fd", "nbd", "mtdblock"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return strings.Contains(name, "boot") || strings.Contains(name, "rpmb") // eMMC hardware boot areas
}

func (s sysfs) list(all bool) ([]Device, error) {
	mounts, err := s.mounts()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.sys, "block"))
	if err != nil {
		return nil, fmt.Errorf("list drives: %w", err)
	}
	var out []Device
	for _, e := range ents {
		name := e.Name()
		if skipDisk(name) {
			continue
		}
		d := s.device(name, mounts)
		if strings.HasPrefix(name, "loop") && d.BackingFile == "" {
			continue // an unattached loop device
		}
		if hidden, _ := d.Hidden(); hidden && !all {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// device describes the whole disk name.
func (s sysfs) device(name string, mounts map[string][]string) Device {
	d := Device{Name: name, Path: filepath.Join(s.dev, name)}
	sectors, _ := strconv.ParseInt(s.read("block", name, "size"), 10, 64)
	d.Size = sectors * 512 // sysfs counts 512-byte sectors whatever the block size
	d.LogicalBlockSize, _ = strconv.Atoi(s.read("block", name, "queue", "logical_block_size"))
	if d.LogicalBlockSize <= 0 {
		d.LogicalBlockSize = 512
	}
	d.Removable = s.read("block", name, "removable") == "1"
	d.ReadOnly = s.read("block", name, "ro") == "1"
	real, _ := filepath.EvalSymlinks(filepath.Join(s.sys, "block", name))
	d.Transport = transport(name, real)
	switch d.Transport {
	case "mmc":
		d.Model = s.read("block", name, "device", "name")
		d.Serial = s.read("block", name, "device", "serial")
		if m := s.read("block", name, "device", "manfid"); m != "" {
			d.Vendor = mmcVendor(m)
		}
	case "loop":
		d.BackingFile = s.read("block", name, "loop", "backing_file")
	default:
		if v := s.read("block", name, "device", "vendor"); !strings.HasPrefix(v, "0x") {
			d.Vendor = v
		}
		d.Model = s.read("block", name, "device", "model")
		d.Serial = s.read("block", name, "device", "serial")
		if d.Serial == "" {
			d.Serial = vpdSerial(filepath.Join(s.sys, "block", name, "device", "vpd_pg80"))
		}
	}
	if d.Transport == "usb" {
		d.USB = usbFromSysfs(real)
		if d.USB != nil {
			enrichUSB(d.USB)
			if d.Serial == "" {
				d.Serial = d.USB.Serial
			}
		}
	}
	external := d.Removable || d.Transport == "usb" || d.Transport == "loop" ||
		(d.Transport == "mmc" && s.read("block", name, "device", "type") == "SD")
	d.Internal = !external
	d.Partitions = s.partitions(name, mounts)
	for _, n := range s.tree(name) {
		if n != name && !strings.HasPrefix(n, name) {
			d.Holders = append(d.Holders, n)
		}
		for _, mp := range mounts[n] {
			d.Mounts = append(d.Mounts, mp)
			if !d.System && isSystemMount(mp) {
				d.System, d.SystemReason = true, fmt.Sprintf("%s is mounted from %s", mp, n)
				if mp == "[swap]" {
					d.SystemReason = "swap is active on " + n
				}
			}
		}
	}
	return d
}

// partitions lists the partitions of disk with their sizes, mountpoints, and the label and file
// system type udev probed.
func (s sysfs) partitions(disk string, mounts map[string][]string) []Partition {
	ents, err := os.ReadDir(s.classPath(disk))
	if err != nil {
		return nil
	}
	var out []Partition
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), disk) {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.classPath(disk), e.Name(), "partition")); err != nil {
			continue
		}
		p := Partition{Name: e.Name(), Mounts: mounts[e.Name()]}
		sectors, _ := strconv.ParseInt(s.read("class", "block", e.Name(), "size"), 10, 64)
		p.Size = sectors * 512
		p.Label, p.FSType = s.udevFS(s.read("class", "block", e.Name(), "dev"))
		out = append(out, p)
	}
	return out
}

// udevFS reads ID_FS_LABEL and ID_FS_TYPE from udev's database entry for block device maj:min.
func (s sysfs) udevFS(majmin string) (label, fstype string) {
	if majmin == "" || s.udev == "" {
		return "", ""
	}
	b, err := os.ReadFile(filepath.Join(s.udev, "b"+majmin))
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "E:ID_FS_LABEL="); ok {
			label = v
		} else if v, ok := strings.CutPrefix(line, "E:ID_FS_TYPE="); ok {
			fstype = v
		}
	}
	return label, fstype
}

// signature is a cheap summary of the block devices (names and sizes): it changes when a drive is
// plugged or pulled, or a card inserted into a reader.
func (s sysfs) signature() string {
	ents, _ := os.ReadDir(filepath.Join(s.sys, "block"))
	var b strings.Builder
	for _, e := range ents {
		b.WriteString(e.Name() + "=" + s.read("block", e.Name(), "size") + ";")
	}
	return b.String()
}

func transport(name, real string) string {
	switch {
	case strings.HasPrefix(name, "loop"):
		return "loop"
	case strings.HasPrefix(name, "mmcblk"):
		return "mmc"
	case strings.HasPrefix(name, "nvme"):
		return "nvme"
	case strings.Contains(real, "/usb"):
		return "usb"
	case strings.Contains(real, "/virtio"):
		return "virtio"
	case strings.Contains(real, "/ata"):
		return "sata"
	case strings.Contains(real, "/host"):
		return "scsi"
	}
	return ""
}

// mmcVendor names the common SD card manufacturer IDs.
func mmcVendor(manfid string) string {
	id, err := strconv.ParseUint(strings.TrimPrefix(manfid, "0x"), 16, 32)
	if err != nil {
		return ""
	}
	names := map[uint64]string{0x01: "Panasonic", 0x02: "Toshiba", 0x03: "SanDisk", 0x1b: "Samsung",
		0x1d: "ADATA", 0x27: "Phison", 0x28: "Lexar", 0x41: "Kingston", 0x74: "Transcend", 0x9f: "Kingston"}
	return names[id]
}

// vpdSerial reads the unit serial number from a SCSI VPD page 0x80.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return strings.TrimSpace(string(b[4 : 4+n]))
}

// usbFromSysfs finds the USB device above a block device's sysfs path.
func usbFromSysfs(real string) *USBInfo {
	for dir := real; dir != "/" && dir != "." && dir != ""; dir = filepath.Dir(dir) {
		vid, err := os.ReadFile(filepath.Join(dir, "idVendor"))
		if err != nil {
			continue
		}
		rd := func(f string) string {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			return strings.TrimSpace(string(b))
		}
		u := &USBInfo{VendorID: strings.TrimSpace(string(vid)), ProductID: rd("idProduct"),
			Manufacturer: rd("manufacturer"), Product: rd("product"), Serial: rd("serial")}
		u.Bus, _ = strconv.Atoi(rd("busnum"))
		u.Address, _ = strconv.Atoi(rd("devnum"))
		if sp := rd("speed"); sp != "" {
			u.Speed = usbSpeedName(sp)
		}
		return u
	}
	return nil
}

func usbSpeedName(mbps string) string {
	names := map[string]string{"1.5": "low", "12": "full", "480": "high", "5000": "super", "10000": "super+", "20000": "super+ 2x2"}
	if n, ok := names[mbps]; ok {
		return mbps + " Mb/s (" + n + ")"
	}
	return mbps + " Mb/s"
}

// lookup describes the whole disk at path, refusing anything that is not a whole-disk block device.
func (s sysfs) lookup(path string) (Device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("%s: %w: no such device; run 'kiln devices' to list drives", path, ErrNotBlockDevice)
		}
		return Device{}, fmt.Errorf("%s: %w", path, err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return Device{}, fmt.Errorf("%s: %w (it is a %s); give the drive's device path, e.g. /dev/sdb", path, ErrNotBlockDevice, modeName(fi.Mode()))
	}
	mm, err := s.devnum(path)
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", path, err)
	}
	name := s.nameOf(mm)
	if name == "" {
		return Device{}, fmt.Errorf("%s: %w: the kernel does not list it (device %s)", path, ErrNotBlockDevice, mm)
	}
	if part, parent := s.isPartition(name); part {
		return Device{}, fmt.Errorf("%s: %w: it is a partition of /dev/%s; flash the whole drive", path, ErrNotBlockDevice, parent)
	}
	mounts, err := s.mounts()
	if err != nil {
		return Device{}, err
	}
	d := s.device(name, mounts)
	d.Path = path
	return d, nil
}
