package flasher

import (
	"testing"
)

const diskutilList = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>AllDisksAndPartitions</key><array>
 <dict><key>Content</key><string>GUID_partition_scheme</string><key>DeviceIdentifier</key><string>disk0</string>
  <key>Partitions</key><array><dict><key>DeviceIdentifier</key><string>disk0s1</string><key>MountPoint</key><string>/System/Volumes/xarts</string></dict>
  <dict><key>DeviceIdentifier</key><string>disk0s2</string></dict></array><key>Size</key><integer>500277790720</integer></dict>
 <dict><key>APFSPhysicalStores</key><array><dict><key>DeviceIdentifier</key><string>disk0s2</string></dict></array>
  <key>APFSVolumes</key><array><dict><key>DeviceIdentifier</key><string>disk3s1s1</string><key>MountPoint</key><string>/</string></dict></array>
  <key>DeviceIdentifier</key><string>disk3</string></dict>
 <dict><key>DeviceIdentifier</key><string>disk4</string><key>Partitions</key><array>
  <dict><key>DeviceIdentifier</key><string>disk4s1</string><key>MountPoint</key><string>/Volumes/NO NAME</string></dict></array>
  <key>Size</key><integer>15931539456</integer></dict>
</array>
<key>WholeDisks</key><array><string>disk0</string><string>disk3</string><string>disk4</string></array>
</dict></plist>`

func TestDiskutilDevices(t *testing.T) {
	v, err := parsePlist([]byte(diskutilList))
	if err != nil {
		t.Fatal(err)
	}
	infos := map[string]map[string]any{
		"disk0": {"TotalSize": int64(500277790720), "DeviceBlockSize": int64(4096), "Internal": true, "BusProtocol": "Apple Fabric",
			"MediaName": "APPLE SSD AP0512Q", "WritableMedia": true, "Removable": false},
		"disk4": {"TotalSize": int64(15931539456), "DeviceBlockSize": int64(512), "Internal": false, "BusProtocol": "USB",
			"MediaName": "SanDisk Ultra", "WritableMedia": true, "RemovableMedia": true},
	}
	ds := diskutilDevices(v.(map[string]any), func(id string) (map[string]any, error) { return infos[id], nil })
	if len(ds) != 2 {
		t.Fatalf("%+v", ds)
	}
	if d := ds[0]; d.Name != "disk0" || !d.System || !d.Internal || d.LogicalBlockSize != 4096 || d.Transport != "nvme" {
		t.Errorf("disk0 (holds / through APFS container disk3): %+v", d)
	}
	if d := ds[1]; d.Name != "disk4" || d.System || d.Internal || !d.Removable || d.Transport != "usb" || d.Mounts[0] != "/Volumes/NO NAME" {
		t.Errorf("disk4: %+v", d)
	}
}
