package app

import (
	"context"
	"fmt"
	"image"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/app/rfb"
)

// screendumpFPS is the frame rate of the screendump fallback when no VNC socket is available.
const screendumpFPS = 4

// previewScreen boots an image in a VM and shows its screen and serial console.
type previewScreen struct {
	a       *App
	content fyne.CanvasObject

	image    string
	picker   *imagePicker
	firmware *widget.Select
	fwFile   string
	attach   *widget.RadioGroup

	startBtn, stopBtn *widget.Button
	status, accel     *widget.Label
	screen            *vmScreen
	console           *console
	input             *widget.Entry

	mu     sync.Mutex
	vm     VM
	cancel context.CancelFunc
}

const (
	fwUEFI = "UEFI (OVMF)"
	fwBIOS = "BIOS (SeaBIOS)"
	fwFile = "Firmware file…"

	attachDisk = "Disk"
	attachUSB  = "USB stick"
)

func newPreviewScreen(a *App) *previewScreen {
	s := &previewScreen{a: a}
	s.picker = newImagePicker(a, previewExtensions, func(path string) {
		s.image = path
		if s.running() == nil {
			s.startBtn.Enable()
		}
		s.chooseFirmware(path)
	})
	s.picker.label.Truncation = fyne.TextTruncateEllipsis
	s.firmware = widget.NewSelect([]string{fwUEFI, fwBIOS, fwFile}, s.onFirmware)
	s.firmware.SetSelected(fwUEFI)
	s.attach = widget.NewRadioGroup([]string{attachDisk, attachUSB}, nil)
	s.attach.Horizontal = true
	s.attach.SetSelected(attachDisk)

	s.startBtn = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), s.onStart)
	s.startBtn.Importance = widget.HighImportance
	s.startBtn.Disable()
	s.stopBtn = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), s.onStop)
	s.stopBtn.Disable()
	s.status = widget.NewLabel("Not running.")
	s.accel = widget.NewLabel("")
	s.accel.Importance = widget.LowImportance
	s.accel.Wrapping = fyne.TextWrapWord

	s.screen = newVMScreen()
	s.console = newConsole()
	s.input = widget.NewEntry()
	s.input.SetPlaceHolder("Type a command for the serial console and press Enter")
	s.input.OnSubmitted = s.onSerialLine

	controls := widget.NewForm(
		&widget.FormItem{Text: "Image", Widget: s.picker.Row},
		&widget.FormItem{Text: "", Widget: s.picker.label},
		&widget.FormItem{Text: "Firmware", Widget: container.NewBorder(nil, nil, nil, s.attach, s.firmware)},
	)
	run := container.NewVBox(container.NewGridWithColumns(2, s.startBtn, s.stopBtn), s.status, s.accel)
	top := container.NewGridWithColumns(2, controls, run)

	// The screen takes the room there is and scales its frame to it; the console below keeps at
	// least consoleMinLines, and the divider between them moves.
	consoleTitle := widget.NewLabelWithStyle("Serial console", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	consolePane := container.NewBorder(nil, container.NewBorder(nil, nil, consoleTitle, nil, s.input), nil, nil,
		minHeight(s.console.scroll, consoleMinLines*consoleLineHeight()))
	split := container.NewVSplit(s.screen, consolePane)
	split.SetOffset(0.7)
	s.content = container.NewBorder(container.NewVBox(heading("Preview in a VM"), top), nil, nil, nil, split)
	return s
}

// consoleMinLines is the least the serial console shows, however small the window.
const consoleMinLines = 8

// consoleLineHeight is the height of one line of the console's monospaced text grid.
func consoleLineHeight() float32 {
	return fyne.MeasureText("M", theme.TextSize(), fyne.TextStyle{Monospace: true}).Height
}

// previewExtensions are the files the Preview screen's picker offers (images QEMU boots as they are).
var previewExtensions = []string{".img", ".raw", ".iso", ".qcow2"}

// setImage chooses the image to boot.
func (s *previewScreen) setImage(path string) { s.picker.Set(path) }

// chooseFirmware selects the firmware the image is made for, as kiln preview --firmware auto does:
// SeaBIOS for a BIOS-only image, UEFI for one with an EFI system partition (a hybrid image too,
// which the user may switch to BIOS).
func (s *previewScreen) chooseFirmware(path string) {
	s.a.background(func() {
		fw, err := s.a.cores.Preview.Firmware(path)
		onUI(func() {
			if err != nil || s.image != path || s.running() != nil {
				return
			}
			switch fw {
			case "bios":
				s.firmware.SetSelected(fwBIOS)
				s.status.SetText("No EFI system partition: the image boots with BIOS (SeaBIOS).")
			case "uefi":
				s.firmware.SetSelected(fwUEFI)
				s.status.SetText("The image boots with UEFI; pick BIOS to try its legacy boot loader, if it has one.")
			}
		})
	})
}

func (s *previewScreen) onFirmware(choice string) {
	if choice != fwFile {
		return
	}
	dialog.ShowFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			s.firmware.SetSelected(fwUEFI)
			return
		}
		rc.Close()
		s.fwFile = rc.URI().Path()
		s.status.SetText("Firmware: " + s.fwFile)
	}, s.a.win)
}

func (s *previewScreen) options() PreviewOptions {
	o := PreviewOptions{Image: s.image, Firmware: "uefi", AsUSB: s.attach.Selected == attachUSB, MemoryMB: 512}
	switch s.firmware.Selected {
	case fwBIOS:
		o.Firmware = "bios"
	case fwFile:
		o.Firmware = s.fwFile
	}
	return o
}

func (s *previewScreen) running() VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vm
}

// onStart boots the VM in the background.
func (s *previewScreen) onStart() {
	if s.image == "" || s.running() != nil || s.cancel != nil {
		return
	}
	o := s.options()
	ctx, cancel := context.WithCancel(s.a.ctx)
	s.cancel = cancel
	s.startBtn.Disable()
	s.stopBtn.Enable()
	s.console.Clear()
	s.status.SetText("Starting QEMU…")
	s.a.background(func() {
		vm, err := s.a.cores.Preview.Start(ctx, o)
		onUI(func() { s.started(ctx, vm, err) })
	})
}

// started wires the VM's console and screen; it runs on the UI thread.
func (s *previewScreen) started(ctx context.Context, vm VM, err error) {
	if err != nil {
		s.cancel()
		s.cancel = nil
		s.stopBtn.Disable()
		s.startBtn.Enable()
		s.status.SetText("Not running.")
		if !errCancelled(err) {
			s.a.showError("The VM did not start", err, "Check the image file and the firmware choice. Kiln needs QEMU (and OVMF for UEFI): install them with your package manager.")
		}
		return
	}
	s.mu.Lock()
	s.vm = vm
	s.mu.Unlock()
	name, why := vm.Accelerator()
	s.status.SetText("Running " + s.image)
	s.accel.SetText("Accelerator: " + name + " — " + why)
	s.a.watch(func() { s.console.Follow(vm.Serial()) })
	if sock := vm.VNCSocket(); sock != "" {
		s.a.watch(func() { s.showVNC(ctx, vm, sock) })
	} else {
		s.a.watch(func() { s.showScreendumps(ctx, vm) })
	}
	s.a.watch(func() {
		select {
		case <-vm.Done():
		case <-ctx.Done():
			vm.Stop()
			<-vm.Done()
		}
		onUI(func() { s.stopped(vm) })
	})
}

// showVNC draws the guest screen from the VNC socket, falling back to screendumps if it fails.
func (s *previewScreen) showVNC(ctx context.Context, vm VM, sock string) {
	c, err := rfb.Dial(sock)
	if err != nil {
		s.showScreendumps(ctx, vm)
		return
	}
	onUI(func() { s.screen.input = c })
	var (
		mu      sync.Mutex
		pending bool
		frame   *image.RGBA
	)
	c.OnUpdate = func() {
		mu.Lock()
		defer mu.Unlock()
		if pending {
			return
		}
		pending = true
		time.AfterFunc(time.Second/maxUIRate, func() {
			mu.Lock()
			pending = false
			frame = c.Snapshot(frame)
			f := frame
			mu.Unlock()
			onUI(func() { s.screen.SetFrame(f) })
		})
	}
	go func() { <-ctx.Done(); c.Close() }()
	c.Run()
}

// showScreendumps polls QMP screendumps at screendumpFPS until ctx ends.
func (s *previewScreen) showScreendumps(ctx context.Context, vm VM) {
	t := time.NewTicker(time.Second / screendumpFPS)
	defer t.Stop()
	for {
		img, err := vm.Screendump(ctx)
		if err == nil {
			onUI(func() { s.screen.SetFrame(img) })
		}
		select {
		case <-ctx.Done():
			return
		case <-vm.Done():
			return
		case <-t.C:
		}
	}
}

// stopped resets the controls after the VM exited; it runs on the UI thread.
func (s *previewScreen) stopped(vm VM) {
	s.mu.Lock()
	s.vm = nil
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	s.screen.Clear()
	s.stopBtn.Disable()
	if s.image != "" {
		s.startBtn.Enable()
	}
	if err := vm.Err(); err != nil {
		s.status.SetText("The VM stopped: " + err.Error())
	} else {
		s.status.SetText("Stopped.")
	}
}

func (s *previewScreen) onStop() {
	if s.cancel != nil {
		s.status.SetText("Stopping…")
		s.cancel()
	}
}

// stopVM stops a running VM when the app closes.
func (s *previewScreen) stopVM() {
	if vm := s.running(); vm != nil {
		vm.Stop()
	}
}

func (s *previewScreen) onSerialLine(line string) {
	vm := s.running()
	if vm == nil {
		return
	}
	s.a.background(func() { fmt.Fprint(vm.SerialIn(), line+"\r") })
	s.input.SetText("")
}
