package grubenv

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
