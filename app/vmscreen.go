package app

import (
	"image"
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"
)

// guestInput receives the keyboard and mouse events the screen widget forwards to the VM.
type guestInput interface {
	Key(keysym uint32, down bool) error
	Pointer(x, y int, buttons uint8) error
}

// vmScreen shows the guest's display scaled to fit and forwards input to it while focused.
type vmScreen struct {
	widget.BaseWidget
	img     *canvas.Image
	frame   image.Image
	input   guestInput
	buttons uint8
	focused bool
	hint    *canvas.Text // shown while no VM is running
}

func newVMScreen() *vmScreen {
	s := &vmScreen{}
	s.img = canvas.NewImageFromImage(blankFrame())
	s.img.FillMode = canvas.ImageFillStretch // placed at drawnRect, which keeps the aspect ratio
	s.img.ScaleMode = canvas.ImageScaleFastest
	s.hint = canvas.NewText("The VM's screen appears here when it runs. Click it to type into the VM.", color.NRGBA{0x9a, 0xa0, 0xa8, 0xff})
	s.hint.Alignment = fyne.TextAlignCenter
	s.hint.TextStyle = fyne.TextStyle{Italic: true}
	s.ExtendBaseWidget(s)
	return s
}

func blankFrame() image.Image {
	img := image.NewRGBA(image.Rect(0, 0, 640, 400))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 0x14, 0x16, 0x1c, 0xff
	}
	return img
}

// SetFrame shows img; it runs on the UI thread.
func (s *vmScreen) SetFrame(img image.Image) {
	s.hint.Hide()
	resized := s.frame == nil || s.frame.Bounds().Size() != img.Bounds().Size()
	s.frame = img
	s.img.Image = img
	if resized { // the guest changed its resolution: the drawn area changes shape
		s.Refresh()
		return
	}
	s.img.Refresh()
}

// Clear shows the blank screen and stops forwarding input.
func (s *vmScreen) Clear() {
	s.input = nil
	s.SetFrame(blankFrame())
	s.hint.Show()
}

func (s *vmScreen) CreateRenderer() fyne.WidgetRenderer {
	bg := canvas.NewRectangle(color.NRGBA{0x14, 0x16, 0x1c, 0xff})
	return &vmScreenRenderer{s: s, bg: bg}
}

func (s *vmScreen) MinSize() fyne.Size { return fyne.NewSize(320, 200) }

type vmScreenRenderer struct {
	s  *vmScreen
	bg *canvas.Rectangle
}

func (r *vmScreenRenderer) Layout(size fyne.Size) {
	r.bg.Resize(size)
	pos, drawn := r.s.drawnRect(size)
	r.s.img.Move(pos)
	r.s.img.Resize(drawn)
	h := r.s.hint.MinSize().Height
	r.s.hint.Move(fyne.NewPos(0, (size.Height-h)/2))
	r.s.hint.Resize(fyne.NewSize(size.Width, h))
}
func (r *vmScreenRenderer) MinSize() fyne.Size { return r.s.MinSize() }
func (r *vmScreenRenderer) Refresh() {
	r.Layout(r.s.Size())
	r.bg.Refresh()
	r.s.img.Refresh()
	r.s.hint.Refresh()
}
func (r *vmScreenRenderer) Objects() []fyne.CanvasObject {
	return []fyne.CanvasObject{r.bg, r.s.img, r.s.hint}
}
func (r *vmScreenRenderer) Destroy() {}

// frameSize is the size of the frame shown (the blank frame's while no VM runs).
func (s *vmScreen) frameSize() image.Point {
	if s.frame == nil {
		return blankFrame().Bounds().Size()
	}
	return s.frame.Bounds().Size()
}

// drawnRect is where the frame is drawn in a widget of the given size: as large as fits, with
// the guest's aspect ratio, centred (letterboxed).
func (s *vmScreen) drawnRect(size fyne.Size) (fyne.Position, fyne.Size) {
	f := s.frameSize()
	if f.X <= 0 || f.Y <= 0 {
		return fyne.Position{}, fyne.Size{}
	}
	scale := min(size.Width/float32(f.X), size.Height/float32(f.Y))
	drawn := fyne.NewSize(float32(f.X)*scale, float32(f.Y)*scale)
	return fyne.NewPos((size.Width-drawn.Width)/2, (size.Height-drawn.Height)/2), drawn
}

// guestPos maps a position in the widget to framebuffer coordinates.
func (s *vmScreen) guestPos(p fyne.Position) (int, int, bool) {
	if s.frame == nil {
		return 0, 0, false
	}
	pos, drawn := s.drawnRect(s.Size())
	f := s.frameSize()
	if drawn.Width <= 0 || drawn.Height <= 0 {
		return 0, 0, false
	}
	scale := drawn.Width / float32(f.X)
	x, y := int((p.X-pos.X)/scale), int((p.Y-pos.Y)/scale)
	return x, y, x >= 0 && y >= 0 && x < f.X && y < f.Y
}

// Tapped focuses the screen so keys go to the guest.
func (s *vmScreen) Tapped(*fyne.PointEvent) {
	if c := fyne.CurrentApp().Driver().CanvasForObject(s); c != nil {
		c.Focus(s)
	}
}

func (s *vmScreen) FocusGained() { s.focused = true }
func (s *vmScreen) FocusLost()   { s.focused = false }

// TypedRune sends a printable character as a key press and release.
func (s *vmScreen) TypedRune(r rune) {
	if s.input != nil {
		s.input.Key(uint32(r), true)
		s.input.Key(uint32(r), false)
	}
}

func (s *vmScreen) TypedKey(*fyne.KeyEvent) {} // special keys go through KeyDown/KeyUp

func (s *vmScreen) KeyDown(e *fyne.KeyEvent) { s.key(e, true) }
func (s *vmScreen) KeyUp(e *fyne.KeyEvent)   { s.key(e, false) }

func (s *vmScreen) key(e *fyne.KeyEvent, down bool) {
	if sym, ok := keysyms[e.Name]; ok && s.input != nil {
		s.input.Key(sym, down)
	}
}

func (s *vmScreen) MouseDown(e *desktop.MouseEvent) {
	s.buttons |= buttonBit(e.Button)
	s.pointer(e.Position)
}
func (s *vmScreen) MouseUp(e *desktop.MouseEvent) {
	s.buttons &^= buttonBit(e.Button)
	s.pointer(e.Position)
}
func (s *vmScreen) MouseIn(e *desktop.MouseEvent) { s.pointer(e.Position) }
func (s *vmScreen) MouseMoved(e *desktop.MouseEvent) {
	s.pointer(e.Position)
}
func (s *vmScreen) MouseOut() {}

func (s *vmScreen) pointer(p fyne.Position) {
	if x, y, ok := s.guestPos(p); ok && s.input != nil {
		s.input.Pointer(x, y, s.buttons)
	}
}

func buttonBit(b desktop.MouseButton) uint8 {
	switch b {
	case desktop.MouseButtonPrimary:
		return 1
	case desktop.MouseButtonTertiary:
		return 2
	case desktop.MouseButtonSecondary:
		return 4
	}
	return 0
}

// keysyms maps Fyne's special keys to X11 keysyms (printable characters arrive as runes).
var keysyms = map[fyne.KeyName]uint32{
	fyne.KeyReturn: 0xff0d, fyne.KeyEnter: 0xff8d, fyne.KeyBackspace: 0xff08, fyne.KeyTab: 0xff09,
	fyne.KeyEscape: 0xff1b, fyne.KeyDelete: 0xffff, fyne.KeyInsert: 0xff63,
	fyne.KeyHome: 0xff50, fyne.KeyLeft: 0xff51, fyne.KeyUp: 0xff52, fyne.KeyRight: 0xff53,
	fyne.KeyDown: 0xff54, fyne.KeyPageUp: 0xff55, fyne.KeyPageDown: 0xff56, fyne.KeyEnd: 0xff57,
	fyne.KeyF1: 0xffbe, fyne.KeyF2: 0xffbf, fyne.KeyF3: 0xffc0, fyne.KeyF4: 0xffc1, fyne.KeyF5: 0xffc2,
	fyne.KeyF6: 0xffc3, fyne.KeyF7: 0xffc4, fyne.KeyF8: 0xffc5, fyne.KeyF9: 0xffc6, fyne.KeyF10: 0xffc7,
	fyne.KeyF11: 0xffc8, fyne.KeyF12: 0xffc9,
	desktop.KeyShiftLeft: 0xffe1, desktop.KeyShiftRight: 0xffe2,
	desktop.KeyControlLeft: 0xffe3, desktop.KeyControlRight: 0xffe4,
	desktop.KeyAltLeft: 0xffe9, desktop.KeyAltRight: 0xffea,
	desktop.KeySuperLeft: 0xffeb, desktop.KeySuperRight: 0xffec,
}
