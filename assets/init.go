package assets

import "embed"

// Init holds the boot files of Kiln images (busybox init): inittab, the start-up script rcS, the
// shutdown script rcK, the kiln-agent supervisor, the udhcpc event script and /etc/profile.
// The initramfs builder places them; see assembler/initramfs.
//
//go:embed init
var Init embed.FS
