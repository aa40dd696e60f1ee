package flasher

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fakeSys builds a sysfs/procfs tree: a USB stick sda (partition sda1 mounted under /media), an
// NVMe disk whose second partition holds an LVM/dm volume mounted at /, and a USB disk sdb with
// active swap.
func fakeSys(t *testing.T) sysfs {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	write := func(p, v string) {
		p = filepath.Join(sys, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		name = filepath.Join(sys, name)
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.Symlink(filepath.Join(sys, target), name); err != nil {
			t.Fatal(err)
		}
	}
	usb := "devices/pci0000:00/0000:00:14.0/usb1/1-2"
	disks := map[string]string{
		"sda":     usb + "/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sda",
		"sdb":     "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host7/target7:0:0/7:0:0:0/block/sdb",
		"nvme0n1": "devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1",
		"dm-0":    "devices/virtual/block/dm-0",
	}
	for name, p := range disks {
		write(p+"/size", "31260672")
		write(p+"/removable", "0")
		write(p+"/ro", "0")
		write(p+"/queue/logical_block_size", "512")
		link(p, "block/"+name)
		link(p, "class/block/"+name)
	}
	write(disks["sda"]+"/removable", "1")
	write(disks["sda"]+"/device/vendor", "SanDisk ")
	write(disks["sda"]+"/device/model", "Ultra Fit")
	write(usb+"/idVendor", "0781")
	write(usb+"/idProduct", "5583")
	write(usb+"/manufacturer", " USB")
	write(usb+"/product", "Ultra Fit")
	write(usb+"/serial", "4C530001230517116443")
	write(usb+"/speed", "5000")
	write(usb+"/busnum", "1")
	write(usb+"/devnum", "3")
	parts := map[string]string{"sda1": "sda", "sdb1": "sdb", "nvme0n1p1": "nvme0n1", "nvme0n1p2": "nvme0n1"}
	for part, disk := range parts {
		p := disks[disk] + "/" + part
		write(p+"/partition", "1")
		write(p+"/size", "1000")
		link(p, "class/block/"+part)
	}
	os.MkdirAll(filepath.Join(sys, disks["nvme0n1"], "nvme0n1p2", "holders"), 0o755)
	link(disks["dm-0"], disks["nvme0n1"]+"/nvme0n1p2/holders/dm-0")
	link(disks["nvme0n1"]+"/nvme0n1p2", disks["dm-0"]+"/slaves/nvme0n1p2")
	devnums := map[string]string{"8:0": "sda", "8:1": "sda1", "8:16": "sdb", "8:17": "sdb1", "259:0": "nvme0n1",
		"259:1": "nvme0n1p1", "259:2": "nvme0n1p2", "253:0": "dm-0"}
	for mm, name := range devnums {
		target := disks[name]
		if target == "" {
			target = disks[parts[name]] + "/" + name
		}
		link(target, "dev/block/"+mm)
		write(target+"/dev", mm)
	}
	udev := filepath.Join(root, "udev")
	os.MkdirAll(udev, 0o755)
	os.WriteFile(filepath.Join(udev, "b8:1"), []byte("S:disk/by-label/MY\\x20STICK\nE:ID_FS_LABEL=MY STICK\nE:ID_FS_TYPE=vfat\n"), 0o644)
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(`25 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw
26 25 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw
40 25 8:1 / /media/me/MY\040STICK rw,nosuid - vfat /dev/sda1 rw
41 25 0:40 / /home rw - btrfs /dev/nvme0n1p1 rw
`), 0o644)
	os.WriteFile(filepath.Join(proc, "swaps"), []byte("Filename\tType\tSize\tUsed\tPriority\n/dev/sdb1 partition 1000 0 -2\n"), 0o644)
	fake := map[string]string{"/dev/sdb1": "8:17", "/dev/nvme0n1p1": "259:1", "/images/x.img": "253:0", "/media/me/MY STICK/x.img": "8:1"}
	return sysfs{sys: sys, proc: proc, dev: "/dev", udev: udev, devnum: func(p string) (string, error) {
		if mm, ok := fake[p]; ok {
			return mm, nil
		}
		return "", os.ErrNotExist
	}}
}

func TestEnumerateSysfs(t *testing.T) {
	s := fakeSys(t)
	shown, err := s.list(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(shown) != 1 || shown[0].Name != "sda" {
		t.Fatalf("listed %+v, want only sda", shown)
	}
	sda := shown[0]
	if sda.Transport != "usb" || !sda.Removable || sda.Internal || sda.System || sda.Size != 31260672*512 ||
		sda.Vendor != "SanDisk" || sda.Model != "Ultra Fit" || sda.Serial != "4C530001230517116443" {
		t.Errorf("sda: %+v", sda)
	}
	if sda.USB == nil || sda.USB.VendorID != "0781" || sda.USB.Speed != "5000 Mb/s (super)" {
		t.Errorf("sda usb: %+v", sda.USB)
	}
	if !slices.Equal(sda.Mounts, []string{"/media/me/MY STICK"}) || !slices.Equal(sda.RemovableMounts(), sda.Mounts) {
		t.Errorf("sda mounts %q, removable-media mounts %q", sda.Mounts, sda.RemovableMounts())
	}
	want := []Partition{{Name: "sda1", Size: 512000, Label: "MY STICK", FSType: "vfat", Mounts: []string{"/media/me/MY STICK"}}}
	if !reflect.DeepEqual(sda.Partitions, want) {
		t.Errorf("sda partitions %+v, want %+v", sda.Partitions, want)
	}
	all, _ := s.list(true)
	byName := map[string]Device{}
	for _, d := range all {
		byName[d.Name] = d
	}
	if _, ok := byName["dm-0"]; ok {
		t.Error("dm-0 listed as a drive")
	}
	nv := byName["nvme0n1"]
	if !nv.System || !strings.Contains(nv.SystemReason, "/ is mounted from dm-0") || !nv.Internal || !slices.Contains(nv.Holders, "dm-0") {
		t.Errorf("nvme0n1: %+v", nv)
	}
	if sdb := byName["sdb"]; !sdb.System || !strings.Contains(sdb.SystemReason, "swap") {
		t.Errorf("sdb: %+v", sdb)
	}
	if h, why := nv.Hidden(); !h || !strings.Contains(why, "system") {
		t.Errorf("nvme0n1 hidden=%v %s", h, why)
	}
}

func TestDiskOfFileFollowsSlaves(t *testing.T) {
	s := fakeSys(t)
	for file, want := range map[string]string{"/images/x.img": "nvme0n1", "/media/me/MY STICK/x.img": "sda"} {
		got, err := s.diskOfFile(file)
		if err != nil || !slices.Equal(got, []string{want}) {
			t.Errorf("%s: %v %v, want %s", file, got, err, want)
		}
	}
}

func TestSystemMounts(t *testing.T) {
	for mp, want := range map[string]bool{"/": true, "/boot": true, "/boot/efi": true, "/usr": true, "/home": true,
		"[swap]": true, "/run/live/medium": true, "/media/me/STICK": false, "/run/media/me/X": false, "/mnt/usb": false,
		"/media": true, "/tmp/x": false, "/mntx": true} {
		if got := isSystemMount(mp); got != want {
			t.Errorf("%s: system=%v, want %v", mp, got, want)
		}
	}
}

func TestSignatureFollowsDrives(t *testing.T) {
	s := fakeSys(t)
	before := s.signature()
	os.WriteFile(filepath.Join(s.sys, "block", "sda", "size"), []byte("0\n"), 0o644) // card pulled from the reader
	if s.signature() == before {
		t.Fatal("the signature did not change when a medium went away")
	}
	os.Symlink(filepath.Join(s.sys, "block", "sdb"), filepath.Join(s.sys, "block", "sdc"))
	if s.signature() == before {
		t.Fatal("the signature did not change when a drive appeared")
	}
}
