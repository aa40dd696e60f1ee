package flasher

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The safety rules (checkTarget, Hidden) run on the drives each platform's enumeration makes out
// of that platform's answers: Windows IOCTL answers and macOS `diskutil -plist` output, decoded
// here on every OS. Each platform describes the same five drives: the system drive, an internal
// data disk, a USB stick, a write-protected SD card and a card reader without a card.

// storageDescriptor is a STORAGE_DEVICE_DESCRIPTOR as IOCTL_STORAGE_QUERY_PROPERTY returns it.
func storageDescriptor(removable bool, bus uint32, vendor, model, serial string) []byte {
	b := make([]byte, 40)
	var rm byte
	if removable {
		rm = 1
	}
	b[10] = rm
	binary.LittleEndian.PutUint32(b[28:], bus)
	put := func(at int, s string) {
		if s == "" {
			return
		}
		binary.LittleEndian.PutUint32(b[at:], uint32(len(b)))
		b = append(b, s...)
		b = append(b, 0)
	}
	put(12, vendor)
	put(16, model)
	put(24, serial)
	binary.LittleEndian.PutUint32(b[0:], 1)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func lengthInfo(size int64) []byte {
	return binary.LittleEndian.AppendUint64(nil, uint64(size))
}

func geometryEx(sector uint32, size int64) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b[8:], 12) // FixedMedia
	binary.LittleEndian.PutUint32(b[20:], sector)
	binary.LittleEndian.PutUint64(b[24:], uint64(size))
	return b
}

// diskExtents is a VOLUME_DISK_EXTENTS naming the given physical drives.
func diskExtents(disks ...int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(disks)))
	b = append(b, 0, 0, 0, 0)
	for _, d := range disks {
		e := make([]byte, 24)
		binary.LittleEndian.PutUint32(e, uint32(d))
		binary.LittleEndian.PutUint64(e[8:], 1<<20)
		binary.LittleEndian.PutUint64(e[16:], 1<<30)
		b = append(b, e...)
	}
	return b
}

type ruleDrives struct{ system, internal, stick, readOnly, empty Device }

func windowsDrives(t *testing.T) ruleDrives {
	volumes := map[string][]int{
		"C:": parseDiskExtents(diskExtents(0)),
		"D:": parseDiskExtents(diskExtents(1, 1)), // a volume with two extents on one disk
		"E:": parseDiskExtents(diskExtents(2)),
	}
	sys := []string{"C:"}
	drives := []Device{
		windowsDrive(0, windowsAnswers{Length: lengthInfo(512e9), Geometry: geometryEx(512, 512e9),
			Storage: storageDescriptor(false, 0x11, "", "Samsung SSD 980 PRO 1TB", "0025_38B1")}, volumes, sys),
		windowsDrive(1, windowsAnswers{Length: lengthInfo(2e12), Geometry: geometryEx(4096, 2e12),
			Storage: storageDescriptor(false, 0xb, "", "ST2000DM008-2FR102", "ZFL1")}, volumes, sys),
		windowsDrive(2, windowsAnswers{Length: lengthInfo(32e9), Geometry: geometryEx(512, 32e9),
			Storage: storageDescriptor(true, 7, "SanDisk", "Ultra Fit", "4C530001")}, volumes, sys),
		windowsDrive(3, windowsAnswers{Length: lengthInfo(16e9), Geometry: geometryEx(512, 16e9),
			Storage: storageDescriptor(true, 0xc, "", "SD Card", ""), WriteProtected: true}, volumes, sys),
		windowsDrive(4, windowsAnswers{Storage: storageDescriptor(true, 7, "Generic-", "SD/MMC", "")}, volumes, sys),
	}
	want := []struct {
		name, transport string
		mounts          int
	}{{"PhysicalDrive0", "nvme", 1}, {"PhysicalDrive1", "sata", 1}, {"PhysicalDrive2", "usb", 1}, {"PhysicalDrive3", "mmc", 0}, {"PhysicalDrive4", "usb", 0}}
	for i, w := range want {
		if d := drives[i]; d.Name != w.name || d.Transport != w.transport || len(d.Mounts) != w.mounts || d.Path != `\\.\`+w.name {
			t.Errorf("drive %d: %+v, want %+v", i, d, w)
		}
	}
	if d := drives[1]; d.LogicalBlockSize != 4096 || d.Size != 2e12 {
		t.Errorf("4Kn data disk: %+v", d)
	}
	if d := drives[2]; d.Vendor != "SanDisk" || d.Model != "Ultra Fit" || d.Serial != "4C530001" || d.Mounts[0] != `E:\` || len(d.RemovableMounts()) != 1 {
		t.Errorf("USB stick: %+v", d)
	}
	return ruleDrives{drives[0], drives[1], drives[2], drives[3], drives[4]}
}

func macDrives(t *testing.T) ruleDrives {
	list, err := os.ReadFile(filepath.Join("testdata", "darwin", "diskutil-list.plist"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := parsePlist(list)
	if err != nil {
		t.Fatal(err)
	}
	info := func(id string) (map[string]any, error) {
		data, err := os.ReadFile(filepath.Join("testdata", "darwin", "diskutil-info-"+id+".plist"))
		if err != nil {
			return nil, err
		}
		m, err := parsePlist(data)
		if err != nil {
			return nil, err
		}
		return m.(map[string]any), nil
	}
	ds := diskutilDevices(v.(map[string]any), info)
	byName := map[string]Device{}
	for _, d := range ds {
		byName[d.Name] = d
	}
	if len(ds) != 5 {
		t.Fatalf("want 5 physical disks (disk3 is APFS-synthesized), got %+v", ds)
	}
	if d := byName["disk4"]; d.Transport != "usb" || d.Model != "SanDisk Ultra Fit" || d.Mounts[0] != "/Volumes/NO NAME" || len(d.RemovableMounts()) != 1 {
		t.Errorf("disk4: %+v", d)
	}
	return ruleDrives{byName["disk0"], byName["disk2"], byName["disk4"], byName["disk5"], byName["disk6"]}
}

func TestSafetyRulesOnEachPlatformsAnswers(t *testing.T) {
	for platform, drives := range map[string]func(*testing.T) ruleDrives{"windows": windowsDrives, "darwin": macDrives} {
		t.Run(platform, func(t *testing.T) {
			r := drives(t)
			confirm := func(d Device) Options {
				return Options{AllowInternal: true, Confirm: map[string]string{d.Path: ConfirmText(d)}}
			}
			cases := []struct {
				name       string
				d          Device
				imageDisks []string
				opts       Options
				want       error
				hidden     bool
			}{
				{"system drive", r.system, nil, confirm(r.system), ErrSystemDrive, true},
				{"internal disk", r.internal, nil, Options{}, ErrInternal, true},
				{"internal disk, mistyped", r.internal, nil, Options{AllowInternal: true, Confirm: map[string]string{r.internal.Path: "x"}}, ErrInternal, true},
				{"internal disk, confirmed", r.internal, nil, confirm(r.internal), nil, true},
				{"USB stick", r.stick, []string{r.system.Name}, Options{}, nil, false},
				{"USB stick holding the image", r.stick, []string{r.stick.Name}, Options{}, ErrImageOnDevice, false},
				{"write-protected card", r.readOnly, nil, Options{}, ErrReadOnly, true},
				{"reader without a card", r.empty, nil, Options{}, ErrRemoved, true},
			}
			for _, c := range cases {
				err := checkTarget(c.d, c.imageDisks, "image.img", c.opts)
				if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
					t.Errorf("%s (%+v): got %v, want %v", c.name, c.d, err, c.want)
				}
				if h, why := c.d.Hidden(); h != c.hidden {
					t.Errorf("%s: hidden = %v (%s), want %v", c.name, h, why, c.hidden)
				}
			}
			if !r.system.System || r.system.SystemReason == "" || !r.system.Internal {
				t.Errorf("system drive: %+v", r.system)
			}
		})
	}
}

// Hostile or truncated answers never panic and never make a drive look safer than its answers say.
func FuzzWindowsAnswers(f *testing.F) {
	f.Add(lengthInfo(32e9), geometryEx(512, 32e9), storageDescriptor(true, 7, "SanDisk", "Ultra Fit", "4C53"), diskExtents(2), false)
	f.Add([]byte{}, []byte{1, 2}, make([]byte, 32), []byte{255, 255, 255, 255, 0, 0, 0, 0}, true)
	bad := storageDescriptor(false, 0x11, "", "NVMe", "")
	binary.LittleEndian.PutUint32(bad[16:], 0xffffffff)
	f.Add(lengthInfo(-1), geometryEx(3, 0), bad, diskExtents(0, 1, 2), false)
	f.Fuzz(func(t *testing.T, length, geometry, storage, extents []byte, wp bool) {
		disks := parseDiskExtents(extents)
		if len(disks) > len(extents)/24 {
			t.Fatalf("%d disks from %d bytes", len(disks), len(extents))
		}
		d := windowsDrive(2, windowsAnswers{Length: length, Geometry: geometry, Storage: storage, WriteProtected: wp},
			map[string][]int{"C:": disks, "E:": {2}}, []string{"C:"})
		if d.Size < 0 || d.LogicalBlockSize < 512 || d.LogicalBlockSize&(d.LogicalBlockSize-1) != 0 {
			t.Fatalf("size %d, block size %d", d.Size, d.LogicalBlockSize)
		}
		if wp && !d.ReadOnly {
			t.Fatal("write-protected drive not read-only")
		}
		if slices.Contains(disks, 2) && !d.System {
			t.Fatalf("drive holding C: not a system drive: %+v", d)
		}
		if !d.Removable && d.Transport != "usb" && d.Transport != "mmc" && d.Transport != "virtual" && !d.Internal {
			t.Fatalf("fixed drive not internal: %+v", d)
		}
	})
}

// Hostile plists never panic or recurse without bound; the drives they describe keep sane values.
func FuzzDiskutilPlist(f *testing.F) {
	for _, name := range []string{"diskutil-list.plist", "diskutil-info-disk4.plist", "diskutil-info-disk0.plist"} {
		data, err := os.ReadFile(filepath.Join("testdata", "darwin", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`<plist><dict><key>a</key><array><array><array></array></array></array></dict></plist>`))
	f.Add([]byte(`<plist><integer>99999999999999999999</integer><data>!!</data></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parsePlist(data)
		if err != nil {
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, d := range diskutilDevices(m, func(string) (map[string]any, error) { return m, nil }) {
			if d.LogicalBlockSize <= 0 || d.Size < 0 {
				t.Fatalf("%+v", d)
			}
		}
	})
}
