package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildBoot: the initramfs of an image with a root partition holds busybox, the modules and
// /init (the script that mounts the root), with the modules to load in its settings, and none of
// the root's files; Tree returns the root's files.
func TestBuildBoot(t *testing.T) {
	s := fullSpec(t)
	s.Kernel = Modules{Release: "6.1.0-test", Load: []string{"erofs", "overlay"}, Dep: []byte{},
		Files: []File{{Path: "kernel/fs/erofs/erofs.ko", Data: []byte("e")}, {Path: "kernel/fs/overlayfs/overlay.ko", Data: []byte("o")}}}
	r, err := BuildBoot(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	dir, listing := unpack(t, r)
	listed(t, listing, `^-rwxr-xr-x .* init$`)
	listed(t, listing, ` bin/busybox$`)
	listed(t, listing, ` lib/modules/6\.1\.0-test/kernel/fs/erofs/erofs\.ko$`)
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil || !strings.Contains(string(init), "switch_root") || !strings.Contains(string(init), "kiln.root=") {
		t.Errorf("/init is not the root-mounting script (%v)", err)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "etc/kiln/boot.conf"))
	if !strings.Contains(string(conf), "KILN_MODULES='erofs overlay'") {
		t.Errorf("boot.conf:\n%s", conf)
	}
	for _, p := range []string{"etc/inittab", "usr/bin/kiln-agent", "etc/motd", "etc/kiln/root.json"} {
		if strings.Contains(listing, " "+p+"\n") {
			t.Errorf("the boot initramfs carries the root's %s", p)
		}
	}
	files, err := Tree(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, p := range []string{"etc/inittab", "usr/bin/kiln-agent", "etc/motd", "bin/busybox", "lib/modules/6.1.0-test/kernel/fs/erofs/erofs.ko"} {
		if !have[p] {
			t.Errorf("Tree lacks %s", p)
		}
	}
}
