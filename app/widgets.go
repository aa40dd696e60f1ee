package app

import (
	"fmt"
	"image/color"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// heading is a screen's title.
func heading(text string) fyne.CanvasObject {
	t := canvas.NewText(text, theme.Color(theme.ColorNameForeground))
	t.TextSize = theme.TextHeadingSize()
	t.TextStyle = fyne.TextStyle{Bold: true}
	return container.NewPadded(t)
}

// formatDuration prints an ETA or elapsed time as "1 min 05 s" / "42 s".
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	if d < time.Hour {
		return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d h %02d min", int(d.Hours()), int(d.Minutes())%60)
}

// count says "1 drive" or "3 drives".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// card is a titled section whose description wraps instead of widening the window.
func card(title, description string, content fyne.CanvasObject) *widget.Card {
	if description == "" {
		return widget.NewCard(title, "", content)
	}
	d := widget.NewLabel(description)
	d.Wrapping = fyne.TextWrapWord
	d.TextStyle = fyne.TextStyle{Italic: true}
	return widget.NewCard(title, "", container.NewVBox(d, content))
}

// minHeight gives o at least height h, at any width.
func minHeight(o fyne.CanvasObject, h float32) fyne.CanvasObject {
	r := canvas.NewRectangle(color.Transparent)
	r.SetMinSize(fyne.NewSize(0, h))
	return container.NewStack(r, o)
}

// pickFile shows a file-open dialog filtered to the given extensions and calls fn with the chosen
// file's path; nothing happens when the user cancels.
func (a *App) pickFile(exts []string, fn func(path string)) {
	d := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			return
		}
		rc.Close()
		fn(rc.URI().Path())
	}, a.win)
	d.SetFilter(storage.NewExtensionFileFilter(exts))
	d.Show()
}
