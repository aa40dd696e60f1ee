package assembler

import (
	"slices"

	"github.com/kilnproject/kiln/assembler/kmod"
	"github.com/kilnproject/kiln/assembler/recipe"
)

// wifiPackages come with [system.wifi] in a package image: the supplicant init starts on the
// wireless interface with the recipe's network, and the regulatory database the kernel reads
// for its country. The board adds its adapters' firmware ([wifi] in the board file).
var wifiPackages = []string{"wpasupplicant", "wireless-regdb"}

// wantsWiFi reports whether the image gets wireless networking: a package image (wpa_supplicant
// is a package) whose recipe names a network.
func wantsWiFi(r *recipe.Recipe) bool {
	w := r.System.WiFi
	return w != nil && w.SSID != "" && len(r.PackageRequests()) > 0
}

// wifiRequests returns the packages Wi-Fi brings: the supplicant, the regulatory database and
// the board's firmware.
func wifiRequests(r *recipe.Recipe) []string {
	out := slices.Clone(wifiPackages)
	if bd, err := r.LoadBoard(); err == nil {
		out = append(out, bd.WiFi.Packages...)
	}
	return out
}

// kernelModules returns the modules the image loads at boot: the recipe's, then the board's
// Wi-Fi drivers when the image has Wi-Fi.
func kernelModules(r *recipe.Recipe) []string {
	mods := r.Kernel.Modules
	if !wantsWiFi(r) {
		return mods
	}
	bd, err := r.LoadBoard()
	if err != nil {
		return mods
	}
	return appendMissing(mods, bd.WiFi.Modules)
}

// boardComponents returns the archive components the board needs beyond the recipe's: the
// one holding its boot firmware, and the one holding its Wi-Fi firmware when the image has Wi-Fi.
func boardComponents(r *recipe.Recipe) []string {
	bd, err := r.LoadBoard()
	if err != nil {
		return nil
	}
	var out []string
	if c := bd.Boot.FirmwareComponent; c != "" {
		out = append(out, c)
	}
	if c := bd.WiFi.Component; c != "" && wantsWiFi(r) && !slices.Contains(out, c) {
		out = append(out, c)
	}
	return out
}

// bootModules returns the modules the initramfs of an image with a root partition loads: those of
// load (in order) but the Wi-Fi drivers, which load from the root where their firmware is, and
// the root's filesystem and overlays.
func bootModules(r *recipe.Recipe, load []string) []string {
	var wifi []string
	if bd, err := r.LoadBoard(); err == nil {
		wifi = bd.WiFi.Modules
	}
	out := slices.DeleteFunc(slices.Clone(load), func(m string) bool {
		return slices.ContainsFunc(wifi, func(w string) bool { return kmod.Name(w) == kmod.Name(m) })
	})
	return appendMissing(out, rootModules)
}
