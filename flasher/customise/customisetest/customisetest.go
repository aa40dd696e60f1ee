// Package customisetest makes disk images shaped like third-party images (Raspberry Pi OS, Ubuntu
// for the Pi, a NoCloud seed, images without cloud-init) for the tests of the customise package, the
// flasher and the CLI. Partition tables and file systems are made by the real tools (sfdisk, sgdisk,
// mkfs.vfat, mcopy); a missing tool skips the test, or fails it under CI=true.
package customisetest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

// Kind is a shape of image.
type Kind string

// The kinds of image Image makes.
const (
	RaspiOS  Kind = "raspios"  // MBR, boot FAT at 4 MiB with Raspberry Pi OS (Trixie)'s commented cloud-init files
	Ubuntu   Kind = "ubuntu"   // GPT, boot FAT at 1 MiB with Ubuntu's default user-data (larger than Kiln's)
	NoCloud  Kind = "nocloud"  // MBR, an empty FAT labelled CIDATA at 512 KiB, inside the first MiB
	Seed16   Kind = "seed16"   // MBR, a 16 MiB FAT16 NoCloud seed (CIDATA) with user-data and meta-data
	Boot12   Kind = "boot12"   // MBR, an 8 MiB FAT12 boot partition (small SBC images) with cloud-init files, a loader and a directory
	Bookworm Kind = "bookworm" // MBR, Raspberry Pi OS before cloud-init: cmdline.txt, no user-data
	Plain    Kind = "plain"    // MBR, a FAT with only an EFI loader: no known format
)

const (
	MiB      = 1 << 20
	FATSize  = 40 * MiB // each image's boot partition
	RootSize = 8 * MiB  // random data after it
)

// Image is a made image: its path, its boot partition and the files on it.
type Image struct {
	Path       string
	BootOffset int64
	BootSize   int64
	Files      map[string][]byte // path on the FAT → contents
}

// Make writes an image of kind k into dir.
func Make(t testing.TB, dir string, k Kind) Image {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(k)), 14))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	im := Image{Path: filepath.Join(dir, string(k)+".img"), BootOffset: 4 * MiB, BootSize: FATSize, Files: map[string][]byte{}}
	label, bits, spc := "bootfs", "32", "1"
	switch k {
	case RaspiOS:
		im.Files = map[string][]byte{
			"cmdline.txt":                   []byte("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n"),
			"config.txt":                    []byte("# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\narm_64bit=1\n"),
			"issue.txt":                     []byte("Raspberry Pi reference 2025-10-01\nGenerated using pi-gen, https://github.com/RPi-Distro/pi-gen, trixie\n"),
			"user-data":                     []byte("#cloud-config\n# This is the user-data configuration file for cloud-init. It is applied on first boot.\n#hostname: raspberrypi\n"),
			"network-config":                []byte("# This file contains a netplan-compatible configuration which cloud-init will apply on first boot.\n#network:\n#  version: 2\n"),
			"meta-data":                     []byte("# This is the meta-data configuration file for cloud-init.\ninstance-id: rpios-image\n"),
			"kernel8.img":                   random(3*MiB + 17),
			"bcm2712-rpi-5-b.dtb":           random(77 << 10),
			"overlays/vc4-kms-v3d-pi5.dtbo": random(4099),
			"LICENCE.broadcom":              []byte("Copyright (c) 2006, Broadcom Corporation.\n"),
		}
	case Ubuntu:
		im.BootOffset = MiB
		label = "system-boot"
		im.Files = map[string][]byte{
			"user-data": []byte("#cloud-config\n\n# This is the user-data configuration file for cloud-init. By default this sets\n# up an initial user called \"ubuntu\" with password \"ubuntu\", which must be\n# changed at first login.\n" +
				strings.Repeat("#\n# Further examples of what can be set here are commented out below.\n", 40) +
				"chpasswd:\n  expire: true\n  users:\n  - name: ubuntu\n    password: ubuntu\n    type: text\n\nssh_pwauth: true\n"),
			"network-config": []byte("# This file contains a netplan-compatible configuration.\nversion: 2\nethernets:\n  eth0:\n    dhcp4: true\n    optional: true\n"),
			"meta-data":      []byte("# This is the meta-data for cloud-init\ninstance-id: cloud-image\n"),
			"cmdline.txt":    []byte("console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc\n"),
			"config.txt":     []byte("[all]\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n"),
			"README":         []byte("An overview of the files on the /boot/firmware partition\n"),
			"vmlinuz":        random(2*MiB + 5),
			"initrd.img":     random(MiB + 3),
		}
	case NoCloud:
		im.BootOffset = 512 << 10
		label = "CIDATA"
	case Seed16:
		im.BootOffset, im.BootSize, bits = MiB, 16*MiB, "16"
		label = "CIDATA"
		im.Files = map[string][]byte{
			"user-data": []byte("#cloud-config\nhostname: seeded\n"),
			"meta-data": []byte("instance-id: seed-1\n"),
		}
	case Boot12:
		im.BootOffset, im.BootSize, bits, spc = MiB, 8*MiB, "12", "8"
		label = "BOOT"
		im.Files = map[string][]byte{
			"user-data":              []byte("#cloud-config\nhostname: board\n"),
			"meta-data":              []byte("instance-id: board-1\n"),
			"u-boot.bin":             random(600<<10 + 7),
			"boot.scr":               random(3001),
			"dtbs/board-a.dtb":       random(40<<10 + 1),
			"dtbs/board-b.dtb":       random(2047),
			"extlinux/extlinux.conf": []byte("label kiln\n  kernel /Image\n"),
		}
	case Bookworm:
		im.Files = map[string][]byte{
			"cmdline.txt": []byte("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"),
			"config.txt":  []byte("dtparam=audio=on\n"),
			"issue.txt":   []byte("Raspberry Pi reference 2024-11-19\nGenerated using pi-gen, bookworm\n"),
			"kernel8.img": random(MiB),
		}
	case Plain:
		im.Files = map[string][]byte{"EFI/BOOT/BOOTAA64.EFI": random(300 << 10)}
	default:
		t.Fatalf("unknown image kind %q", k)
	}
	size := im.BootOffset + im.BootSize + RootSize + MiB
	fat := filepath.Join(dir, string(k)+".fat")
	run(t, "truncate", "-s", itoa(im.BootSize), fat)
	run(t, "mkfs.vfat", "-F", bits, "-S", "512", "-s", spc, "-n", label, "-i", "4e639091", fat)
	for name, data := range im.Files {
		local := filepath.Join(dir, "src", string(k), filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if d := filepath.Dir(name); d != "." {
			parts := strings.Split(d, "/")
			for i := range parts {
				exec.Command(testenv.Tool(t, "mmd"), "-D", "s", "-i", fat, "::"+strings.Join(parts[:i+1], "/")).Run()
			}
		}
		run(t, "mcopy", "-i", fat, local, "::"+name)
	}
	img, err := os.Create(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := img.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Data before the boot partition (a boot loader's area) and after it (the root file system).
	if _, err := img.WriteAt(random(int(im.BootOffset-64<<10)), 64<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(random(RootSize), im.BootOffset+im.BootSize); err != nil {
		t.Fatal(err)
	}
	fb, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(fb, im.BootOffset); err != nil {
		t.Fatal(err)
	}
	img.Close()
	bootSec, rootSec := im.BootOffset/512, (im.BootOffset+im.BootSize)/512
	if k == Ubuntu {
		run(t, "sgdisk", "-a", "1", "-n", "1:"+itoa(bootSec)+":"+itoa(rootSec-1), "-t", "1:0700", "-c", "1:system-boot",
			"-n", "2:"+itoa(rootSec)+":"+itoa(rootSec+RootSize/512-1), "-t", "2:8300", "-c", "2:writable", im.Path)
	} else {
		script := "label: dos\nlabel-id: 0x4e639091\nstart=" + itoa(bootSec) + ", size=" + itoa(im.BootSize/512) + ", type=" + map[string]string{"32": "c", "16": "e", "12": "1"}[bits] + "\nstart=" + itoa(rootSec) + ", size=" + itoa(RootSize/512) + ", type=83\n"
		cmd := exec.Command(testenv.Tool(t, "sfdisk"), "--no-reread", "--no-tell-kernel", "-q", im.Path)
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
	}
	return im
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Check runs the peers a user would on the customised partition: fsck.vfat finds nothing to fix,
// mtools reads every file the image had unchanged, and cloud-init's schema accepts user-data. It
// returns the cloud-init files as mtools reads them.
func Check(t testing.TB, fat string, im Image) map[string]string {
	t.Helper()
	if out, err := exec.Command(testenv.Tool(t, "fsck.vfat"), "-n", fat).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	mtype := testenv.Tool(t, "mtype")
	for name, want := range im.Files {
		if name == "user-data" || name == "network-config" || name == "meta-data" {
			continue
		}
		got, err := exec.Command(mtype, "-i", fat, "::"+name).Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s changed on the boot partition (%v): %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	files := map[string]string{}
	for _, name := range []string{"user-data", "network-config", "meta-data"} {
		if b, err := exec.Command(mtype, "-i", fat, "::"+name).Output(); err == nil {
			files[name] = string(b)
		}
	}
	ud := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(ud, []byte(files["user-data"]), 0o600)
	if out, err := exec.Command(testenv.Tool(t, "cloud-init"), "schema", "--config-file", ud).CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid cloud-config") {
		t.Fatalf("cloud-init schema: %v\n%s\n%s", err, out, files["user-data"])
	}
	return files
}

// Netplan has netplan generate NetworkManager or networkd configuration from network-config.
func Netplan(t testing.TB, cfg string) string {
	t.Helper()
	netplan := testenv.Tool(t, "netplan")
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/netplan"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "etc/netplan/50-cloud-init.yaml"), []byte("network:\n"+indent(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(netplan, "generate", "--root-dir", root).CombinedOutput(); err != nil {
		t.Fatalf("netplan generate: %v\n%s\n%s", err, out, cfg)
	}
	var all strings.Builder
	filepath.Walk(filepath.Join(root, "run"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
		return nil
	})
	return all.String()
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
