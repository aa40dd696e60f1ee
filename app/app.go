// Package app is Kiln's desktop GUI (Fyne): Build, Flash, Preview and Serve screens over the core packages.
package app

import (
	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"
)

// Run opens the main window and blocks until it is closed.
func Run(version string) error {
	a := fyneapp.NewWithID("org.kilnproject.kiln")
	w := a.NewWindow("Kiln " + version)
	w.SetContent(widget.NewLabel("Kiln — build, flash, preview and serve OS images"))
	w.Resize(fyne.NewSize(960, 640))
	w.ShowAndRun()
	return nil
}
