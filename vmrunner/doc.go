// Package vmrunner boots a disk image in QEMU for a preview: Kiln's own images and any raw, qcow2
// or ISO 9660 image a user downloaded, under UEFI (OVMF, found through QEMU's firmware descriptors),
// BIOS (SeaBIOS) or a firmware file of the user's. A preview never writes to the image: drives run
// with -snapshot unless Config.Persist names a writable copy.
//
// Start resolves a Config (image format, firmware, accelerator, free SSH port, run directory),
// builds the command line with the pure function CommandLine, starts QEMU paused, connects the
// serial console and QMP sockets and lets the guest run:
//
//	vm, err := vmrunner.Start(ctx, vmrunner.Config{Image: "out/kiln-tiny.img", Display: vmrunner.DisplayNone})
//	if err != nil { ... }
//	defer vm.Stop()
//	if err := vm.WaitFor(ctx, "kiln: ready"); err != nil { ... } // err carries the last lines
//	img, err := vm.Screenshot(ctx)                                  // image.Image of the guest screen
//	err = vm.Powerdown(ctx, 30*time.Second)                         // ACPI power button, then quit
//
// vm.Serial returns an io.ReadCloser that replays the console output from power-on and then
// follows it; vm.SerialInput is the guest's keyboard on the serial line. Both suit a terminal
// widget. vm.Events delivers QMP events (SHUTDOWN, RESET, STOP, ...).
//
// Accelerators (KVM, HVF, WHPX) are used only when a short probe VM proves they run a 64-bit guest;
// otherwise the VM runs under TCG and Info().AccelReason says why. The probe result is cached per
// host boot and QEMU binary in the user cache directory.
//
// Cancelling Start's context stops QEMU; QEMU never outlives the process that started it (process
// group + parent-death signal on Linux, a watchdog on macOS, a kill-on-close job on Windows), and
// the run directory (sockets, firmware variables, screendumps) is removed when QEMU ends.
package vmrunner
