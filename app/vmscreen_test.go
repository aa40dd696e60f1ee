package app

import (
	"image"
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
