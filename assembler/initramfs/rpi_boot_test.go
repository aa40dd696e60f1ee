package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/rpiboot"
)

// TestBootMountsPiPartitions boots the initramfs from a disk laid out as a Raspberry Pi image
// (MBR: autoboot.txt on 1, boot slots 2 and 3, data on 4): init mounts the data partition and
// the three FAT partitions on /boot/rpi/N, where kiln-agent looks for them.
func TestBootMountsPiPartitions(t *testing.T) {
	k := kernel(t)
	s := bootSpec(t, k)
	s.Extra = append(s.Extra, File{Path: "etc/init.d/S60pi", Mode: 0o755,
		Data: []byte("#!/bin/sh\n[ \"$1\" = start ] && echo \"pi: $(grep -c boot_partition /boot/rpi/1/autoboot.txt) $(cat /boot/rpi/2/cmdline.txt) $(ls /boot/rpi/3 | wc -l)\"\n")})
	r, err := Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "pi.img")
	_, _, err = rpiboot.WriteImage(context.Background(), img, 200<<20, 3, []rpiboot.Part{
		{Size: 40 << 20, Type: rpiboot.TypeFAT32, Files: []fat.File{{Path: rpiboot.AutobootFile, Data: rpiboot.Autoboot{Boot: 2, Try: 3}.Encode()}}},
		{Size: 40 << 20, Type: rpiboot.TypeFAT32, Files: []fat.File{{Path: "cmdline.txt", Data: rpiboot.CmdlineTxt("console=serial0,115200", 2)}}},
		{Size: 40 << 20, Type: rpiboot.TypeFAT32},
		{Type: rpiboot.TypeFAT32, Label: "KILN-DATA"},
	}, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kpath, ipath := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kpath, k.vmlinuz, 0o644)
	os.WriteFile(ipath, r.Data, 0o644)
	v := startVM(t, "-kernel", kpath, "-initrd", ipath, "-append", "console=ttyS0",
		"-drive", "file="+img+",format=raw,if=virtio,snapshot=on", "-nic", "none")
	v.wait(readyRE, 0, 180*time.Second)
	t.Logf("ready line after %v", time.Since(v.start).Round(time.Second))
	v.wait(`data partition /dev/vda4 mounted on /data`, 0, time.Second)
	v.wait(`Raspberry Pi boot partitions mounted on /boot/rpi`, 0, time.Second)
	v.wait(`pi: 2 console=serial0,115200 kiln.slot=2 0`, 0, 10*time.Second)
}
