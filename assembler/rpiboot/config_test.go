package rpiboot

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	conf := []byte(`# written by Kiln
[all]
arm_64bit=1
kernel=vmlinuz
initramfs initrd.img followkernel
enable_uart=1
[pi4]
device_tree=bcm2711-rpi-4-b.dtb
[pi3]
device_tree=bcm2710-rpi-3-b.dtb
[tryboot]
kernel=other
[all]
cmdline=cmdline.txt # the default
`)
	for model, want := range map[string]Boot{
		"pi3": {Kernel: "vmlinuz", Initramfs: "initrd.img", DeviceTree: "bcm2710-rpi-3-b.dtb", Cmdline: "cmdline.txt"},
		"pi4": {Kernel: "vmlinuz", Initramfs: "initrd.img", DeviceTree: "bcm2711-rpi-4-b.dtb", Cmdline: "cmdline.txt"},
		"pi5": {Kernel: "vmlinuz", Initramfs: "initrd.img", Cmdline: "cmdline.txt"},
	} {
		got, err := ParseConfig(conf, model)
		if err != nil || got != want {
			t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", model, got, err, want)
		}
	}
	if got, _ := ParseConfig(nil, "pi3"); got.Kernel != "kernel8.img" || got.Cmdline != "cmdline.txt" {
		t.Errorf("defaults: %+v", got)
	}
	for _, bad := range []string{"kernel=../../etc/passwd\n", "device_tree=a\\b\n", string(make([]byte, MaxConfig+1))} {
		if _, err := ParseConfig([]byte(bad), "pi3"); err == nil {
			t.Errorf("ParseConfig(%.20q) accepted", bad)
		}
	}
}

// FuzzConfig: any config.txt parses or fails cleanly, and names no file outside the partition.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("[all]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n[pi3]\ndevice_tree=x.dtb\n"))
	f.Add([]byte("initramfs\ninitramfs\t\ta\n[\n]\n=\ncmdline=../x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseConfig(data, "pi3")
		if err != nil {
			return
		}
		if b.Kernel == "" && b.Cmdline == "" {
			return
		}
		for _, f := range []string{b.Kernel, b.Initramfs, b.DeviceTree, b.Cmdline} {
			if len(f) > 255 || strings.Contains(f, "..") {
				t.Fatalf("file name %q accepted", f)
			}
		}
	})
}
