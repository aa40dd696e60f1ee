package app

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// drivePoll is how often /sys/block is compared for plugged and pulled drives.
const drivePoll = time.Second

// watchDrives signals when the set of block devices or their sizes change (a stick plugged or
// pulled, a card inserted into a reader). Reading /sys/block is a few directory entries and small
// files, cheap enough to poll without netlink privileges.
func watchDrives(ctx context.Context) <-chan struct{} {
	return pollChanges(ctx, drivePoll, blockSignature)
}

func blockSignature() string {
	ents, _ := os.ReadDir("/sys/block")
	var b strings.Builder
	for _, e := range ents {
		size, _ := os.ReadFile(filepath.Join("/sys/block", e.Name(), "size"))
		b.WriteString(e.Name() + "=" + strings.TrimSpace(string(size)) + ";")
	}
	return b.String()
}

// partitionsOf lists the partitions of the drive with kernel name disk from sysfs, with the label
// and file system type udev recorded (blkid's probe results in /run/udev/data).
func partitionsOf(disk string) []Partition {
	dir := filepath.Join("/sys/class/block", disk)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Partition
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), disk) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err != nil {
			continue
		}
		p := Partition{Name: e.Name()}
		if s, err := os.ReadFile(filepath.Join(dir, e.Name(), "size")); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(s)), 10, 64)
			p.Size = n * 512
		}
		if dev, err := os.ReadFile(filepath.Join(dir, e.Name(), "dev")); err == nil {
			p.Label, p.FSType = udevFS(strings.TrimSpace(string(dev)))
		}
		out = append(out, p)
	}
	return out
}

// udevFS reads ID_FS_LABEL and ID_FS_TYPE from udev's database entry for block device maj:min.
func udevFS(majmin string) (label, fstype string) {
	f, err := os.Open("/run/udev/data/b" + majmin)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "E:ID_FS_LABEL="); ok {
			label = v
		} else if v, ok := strings.CutPrefix(line, "E:ID_FS_TYPE="); ok {
			fstype = v
		}
	}
	return label, fstype
}
