package grub

import (
	"fmt"
	"strings"
)

// Boot-slot layout on the boot partition, shared by the image builder and the update agent.
const (
	ConfigPath = "grub/grub.cfg" // the boot script, read from $prefix
	EnvPath    = "grub/grubenv"  // the environment block with the slot state
	SlotDir    = "kiln"          // kiln/<name>-<version>/{linux,initrd,boot.cfg}
)

// Environment variables of the slot state.
const (
	VarDefault = "kiln_default" // the blessed slot (known good)
	VarTrial   = "kiln_trial"   // a slot on trial, "" when none
	VarTries   = "kiln_tries"   // boots the trial slot has left
)

// MaxTries is the largest try count the boot script counts down from.
const MaxTries = 10

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
	for n := MaxTries; n >= 1; n-- {
		kw := "  elif"
		if n == MaxTries {
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
source /` + SlotDir + `/$entry/boot.cfg
boot
`)
	return []byte(b.String())
}

// SlotScript is a slot's boot.cfg: it loads the slot's kernel and initramfs with cmdline.
func SlotScript(base, cmdline string) []byte {
	return LoadScript("/"+SlotDir+"/"+base, cmdline)
}

// LoadScript loads dir/linux with cmdline and dir/initrd.
func LoadScript(dir, cmdline string) []byte {
	var args []string
	for _, w := range strings.Fields(cmdline) {
		args = append(args, quote(w))
	}
	return []byte(fmt.Sprintf("linux %s/linux %s\ninitrd %s/initrd\n", dir, strings.Join(args, " "), dir))
}

// quote makes w one word of GRUB's script language.
func quote(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
