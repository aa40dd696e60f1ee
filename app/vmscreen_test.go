package app

import (
	"image"
	"math"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
)

type recordedInput struct {
	keys     []uint32
	pointers [][3]int
}

func (r *recordedInput) Key(sym uint32, down bool) error {
	if down {
		r.keys = append(r.keys, sym)
	}
	return nil
}

func (r *recordedInput) Pointer(x, y int, b uint8) error {
	r.pointers = append(r.pointers, [3]int{x, y, int(b)})
	return nil
}

// Keys and the mouse reach the guest in its own coordinates, through the letterboxing.
func TestVMScreenForwardsInput(t *testing.T) {
	newTestApp(t)
	s := newVMScreen()
	in := &recordedInput{}
	s.input = in
	s.SetFrame(image.NewRGBA(image.Rect(0, 0, 640, 400)))
	s.Resize(fyne.NewSize(1280, 1000)) // scale 2, 100 px bars above and below

	s.TypedRune('l')
	s.KeyDown(&fyne.KeyEvent{Name: fyne.KeyReturn})
	s.KeyDown(&fyne.KeyEvent{Name: desktop.KeyControlLeft})
	if want := []uint32{'l', 0xff0d, 0xffe3}; len(in.keys) != 3 || in.keys[0] != want[0] || in.keys[1] != want[1] || in.keys[2] != want[2] {
		t.Errorf("keysyms %#x, want %#x", in.keys, want)
	}
	s.MouseDown(&desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: fyne.NewPos(200, 300)}, Button: desktop.MouseButtonPrimary})
	s.MouseUp(&desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: fyne.NewPos(200, 300)}, Button: desktop.MouseButtonPrimary})
	s.MouseMoved(&desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: fyne.NewPos(200, 50)}}) // in the bar: not sent
	if len(in.pointers) != 2 || in.pointers[0] != [3]int{100, 100, 1} || in.pointers[1] != [3]int{100, 100, 0} {
		t.Errorf("pointer events %v", in.pointers)
	}
}

// The Preview screen gives the VM's screen the room it has: the frame is drawn as large as fits
// with the guest's aspect ratio, grows with the window, and the serial console below keeps more
// than a few lines.
func TestPreviewScreenScalesWithTheWindow(t *testing.T) {
	a, _, _, _, _ := newTestApp(t)
	if err := a.Show("preview"); err != nil {
		t.Fatal(err)
	}
	s := a.preview
	s.screen.SetFrame(image.NewRGBA(image.Rect(0, 0, 640, 400)))
	// shown is the frame's size as drawn: contained in the screen widget, aspect kept.
	shown := func() fyne.Size {
		w := s.screen.Size()
		scale := min(w.Width/640, w.Height/400)
		return fyne.NewSize(640*scale, 400*scale)
	}
	var sizes []fyne.Size
	for _, win := range []fyne.Size{WindowSize, fyne.NewSize(1600, 1000)} {
		a.win.Resize(win)
		drawn := shown()
		if img := s.screen.img.Size(); math.Abs(float64(img.Width-drawn.Width)) > 1 || math.Abs(float64(img.Height-drawn.Height)) > 1 {
			t.Errorf("window %v: image object %v, want the fitted frame %v", win, img, drawn)
		}
		if ratio := drawn.Width / drawn.Height; math.Abs(float64(ratio)-1.6) > 0.01 {
			t.Errorf("window %v: frame drawn at %v, aspect %.3f, want 1.6", win, drawn, ratio)
		}
		if drawn.Height < 0.4*win.Height {
			t.Errorf("window %v: frame drawn at %v, less than 40%% of the window's height", win, drawn)
		}
		if lines := s.console.scroll.Size().Height / consoleLineHeight(); lines < consoleMinLines {
			t.Errorf("window %v: the serial console shows %.1f lines, want at least %d", win, lines, consoleMinLines)
		}
		sizes = append(sizes, drawn)
	}
	if sizes[1].Width <= sizes[0].Width*1.2 {
		t.Errorf("the frame is drawn at %v in the default window and %v in a larger one: it does not grow", sizes[0], sizes[1])
	}
}
