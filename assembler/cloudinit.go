package assembler

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assets"
)

// cloudInitScript is where a package image with cloud-init runs its stages: an rcS service script,
// so they finish before init starts the SSH server and the other services.
const cloudInitScript = "etc/init.d/S10cloud-init"

// cloudInitConfig points cloud-init at the NoCloud seed on the boot partition and leaves what the
// image's init already does (network, SSH host keys) to init.
const cloudInitConfig = `# cloud-init in a Kiln image, written by kiln. Init runs the stages from
# /etc/init.d/S10cloud-init (there is no systemd) and links the seed directory
# /var/lib/cloud/seed/nocloud to the boot partition (/boot/efi), where kiln flash
# writes user-data, meta-data and vendor-data.
datasource_list: [NoCloud, None]
# Init brings the network up (DHCP on wired interfaces, Wi-Fi from the recipe).
network: {config: disabled}
# The SSH server's host keys are made on first boot and kept on the data partition.
ssh_deletekeys: false
ssh_genkeytypes: []
# No default "debian" user: users come from the recipe or from user-data.
users: []
# The image has no locales to generate; a locale in user-data still applies.
locale: false
`

// cloudInitTools are Debian's account tools cloud-init runs where the image has busybox applets of
// the same name (busybox passwd -l fails on an account useradd made locked already). The init
// script puts their directory first in cloud-init's PATH.
var cloudInitTools = []string{"usr/bin/passwd", "usr/sbin/chpasswd"}

const cloudInitToolDir = "usr/lib/kiln/cloud-init/bin"

// cloudInit sets up a package image that has the cloud-init package: its boot stages run from an
// init script, its NoCloud datasource reads the boot partition, and an SSH server the image has is
// started even when the recipe has no SSH keys (user-data brings them). Package units of
// cloud-init are not started as services.
func (b *builder) cloudInit(t *fstree.Tree) error {
	if t.Get("usr/bin/cloud-init") == nil {
		return nil
	}
	script, err := fs.ReadFile(assets.Init, "init/cloud-init")
	if err != nil {
		return fmt.Errorf("cloud-init: embedded script: %w", err)
	}
	replace := t.Replace
	t.Replace = true
	defer func() { t.Replace = replace }()
	if err := t.AddFile(cloudInitScript, script, 0o755, "kiln:assets/init/cloud-init"); err != nil {
		return fmt.Errorf("cloud-init: %w", err)
	}
	if err := t.AddFile("etc/cloud/cloud.cfg.d/90_kiln.cfg", []byte(cloudInitConfig), 0o644, "kiln:cloud-init"); err != nil {
		return fmt.Errorf("cloud-init: %w", err)
	}
	for _, p := range cloudInitTools {
		if n := t.Get(p); n != nil && n.IsRegular() {
			if err := t.AddFile(path.Join(cloudInitToolDir, path.Base(p)), n.Data, 0o755, n.Origin); err != nil {
				return fmt.Errorf("cloud-init: %w", err)
			}
		}
	}
	b.inputs.services = slices.DeleteFunc(b.inputs.services, func(sv initramfs.Service) bool {
		return strings.HasPrefix(sv.Name, "cloud-")
	})
	if !slices.ContainsFunc(b.inputs.services, func(sv initramfs.Service) bool { return sv.Name == "sshd" || sv.Name == "dropbear" }) {
		// Password login as sshd_config says: cloud-init's ssh_pwauth sets it.
		if sv, ok := sshService(t, false); ok {
			b.inputs.services = append(b.inputs.services, sv)
		}
	}
	return nil
}

// cloudInitSeed is the NoCloud seed the EFI system partition of a cloud-init image starts with:
// meta-data (which tells `kiln flash` the image takes cloud-init settings) and an empty user-data.
// `kiln flash --hostname …` replaces both.
func (b *builder) cloudInitSeed() []fat.File {
	if !slices.ContainsFunc(b.manifest.Packages, func(p PackageInfo) bool { return p.Name == "cloud-init" }) {
		return nil
	}
	meta := fmt.Sprintf("instance-id: kiln-%s-%s\n", b.r.Name, b.r.Version)
	if h := b.r.System.Hostname; h != "" {
		meta += "local-hostname: " + h + "\n"
	}
	files := []fat.File{
		{Path: "meta-data", Data: []byte(meta)},
		{Path: "user-data", Data: []byte("#cloud-config\n# First-boot settings for cloud-init; kiln flash --hostname, --user, --ssh-key … replace this file.\n{}\n")},
	}
	for _, f := range files {
		if pf, ok := placed("esp:", f.Path, 0o644, f.Data, "", "kiln:cloud-init"); ok {
			b.manifest.Files = append(b.manifest.Files, pf)
		}
	}
	return files
}
