package grub

import (
	"fmt"
	"strings"

	"github.com/kilnproject/kiln/assembler/grub/grubenv"
)

// Modules are the GRUB modules a Kiln core image embeds: disk access through the BIOS, GPT and
// MBR tables, FAT and ISO 9660, the normal shell with its scripting, the Linux loader, and the
// environment block.
var Modules = []string{"biosdisk", "part_gpt", "part_msdos", "fat", "iso9660", "normal", "linux", "loadenv", "test",
	"echo", "configfile", "serial", "terminal", "sleep", "reboot"}

// Script is the boot script. It loads the slot state, counts a trial slot's tries down (GRUB's
// script has no arithmetic, so each count is spelled out) and saves it before booting that slot;
// once no tries are left the default slot boots, as with systemd-boot's boot counting. The slot's
// own boot.cfg loads its kernel and initramfs with its command line.
func Script() []byte {
	var b strings.Builder
	b.WriteString(`# GRUB boot script, written by kiln. The slot state is in grubenv (kiln-agent keeps it).
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
set entry=
load_env --file $prefix/grubenv kiln_default kiln_trial kiln_tries
if [ -n "$kiln_default" ]; then set entry="$kiln_default"; fi
if [ -n "$kiln_trial" ]; then
`)
	for n := grubenv.MaxTries; n >= 1; n-- {
		kw := "  elif"
		if n == grubenv.MaxTries {
			kw = "  if"
		}
		fmt.Fprintf(&b, "%s [ \"$kiln_tries\" = %d ]; then set kiln_tries=%d; set entry=\"$kiln_trial\"\n", kw, n, n-1)
	}
	b.WriteString(`  fi
  save_env --file $prefix/grubenv kiln_tries
fi
if [ -z "$entry" ]; then
  echo "kiln: grubenv names no boot slot"
  sleep 10
  reboot
fi
echo "kiln: booting $entry"
source /` + grubenv.SlotDir + `/$entry/boot.cfg
boot
echo "kiln: $entry did not boot; restarting"
sleep 5
reboot
`)
	return []byte(b.String())
}
