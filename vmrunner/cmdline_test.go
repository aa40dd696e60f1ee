package vmrunner

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func baseSpec() Spec {
	return Spec{
		Image: "/img/kiln.img", Format: FormatRaw, Attach: AttachDisk, Snapshot: true,
		Firmware: FirmwareBIOS, Accel: AccelTCG, CPUs: 2, MemoryMiB: 1024,
		Display: DisplayNone, QMPSocket: "/run/k/qmp.sock", SerialSocket: "/run/k/serial.sock",
		SerialLog: "/run/k/serial.log", SSHPort: 2222,
	}
}

var ovmf = &UEFIFirmware{Device: "flash", Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", CodeFormat: "raw",
	Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd", VarsFormat: "raw"}

// hasSeq reports whether args contains want as a contiguous run.
func hasSeq(args []string, want ...string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Spec)
		want   [][]string // each must appear as a contiguous run
		absent []string   // arguments that must not appear
	}{
		{
			name: "BIOS raw virtio disk under TCG",
			edit: func(s *Spec) {},
			want: [][]string{
				{"-machine", "q35,graphics=off", "-accel", "tcg,thread=multi", "-cpu", "max"},
				{"-smp", "2", "-m", "1024M"},
				{"-drive", "if=none,id=boot0,file=/img/kiln.img,format=raw,discard=unmap"},
				{"-device", "virtio-blk-pci,drive=boot0,bootindex=1"},
				{"-snapshot"},
				{"-display", "none"},
				{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"},
				{"-device", "virtio-net-pci,netdev=net0"},
				{"-chardev", "socket,id=serial0,path=/run/k/serial.sock,server=on,wait=off,logfile=/run/k/serial.log,logappend=off", "-serial", "chardev:serial0"},
				{"-chardev", "socket,id=qmp0,path=/run/k/qmp.sock,server=on,wait=off"},
				{"-mon", "chardev=qmp0,mode=control"},
			},
			absent: []string{"-bios", "if=pflash", "qemu-xhci,id=xhci", "-S", "usb-tablet,bus=xhci.0"},
		},
		{
			name: "UEFI flash firmware with the run's variable store",
			edit: func(s *Spec) { s.Firmware, s.UEFI, s.VarsFile = FirmwareUEFI, ovmf, "/run/k/vars.fd" },
			want: [][]string{
				{"-drive", "if=pflash,unit=0,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"},
				{"-drive", "if=pflash,unit=1,format=raw,file=/run/k/vars.fd"},
			},
			absent: []string{"-bios"},
		},
		{
			name: "UEFI single-file firmware in memory",
			edit: func(s *Spec) {
				s.Firmware, s.UEFI = FirmwareUEFI, &UEFIFirmware{Device: "memory", Code: "/fw/OVMF.fd", CodeFormat: "raw"}
			},
			want:   [][]string{{"-bios", "/fw/OVMF.fd"}},
			absent: []string{"if=pflash"},
		},
		{
			name: "custom firmware file as -bios",
			edit: func(s *Spec) { s.Firmware, s.BIOSFile = FirmwareFile, "/roms/coreboot, v4.rom" },
			want: [][]string{{"-bios", "/roms/coreboot, v4.rom"}}, // -bios takes a plain file name: no escaping
		},
		{
			name: "USB stick on xHCI",
			edit: func(s *Spec) { s.Attach = AttachUSB },
			want: [][]string{
				{"-device", "qemu-xhci,id=xhci"},
				{"-drive", "if=none,id=boot0,file=/img/kiln.img,format=raw"},
				{"-device", "usb-storage,bus=xhci.0,drive=boot0,removable=on,bootindex=1"},
			},
			absent: []string{"virtio-blk-pci,drive=boot0,bootindex=1"},
		},
		{
			name: "ISO as CD-ROM",
			edit: func(s *Spec) { s.Format, s.Attach, s.Image = FormatISO, AttachCDROM, "/img/debian.iso" },
			want: [][]string{
				{"-drive", "if=none,id=boot0,file=/img/debian.iso,format=raw,media=cdrom,readonly=on"},
				{"-device", "ide-cd,bus=ide.0,drive=boot0,bootindex=1"},
			},
		},
		{
			name: "qcow2 format",
			edit: func(s *Spec) { s.Format, s.Image = FormatQCOW2, "/img/cloud.qcow2" },
			want: [][]string{{"-drive", "if=none,id=boot0,file=/img/cloud.qcow2,format=qcow2,discard=unmap"}},
		},
		{
			name: "commas doubled in every option value, spaces kept",
			edit: func(s *Spec) {
				s.Image = "/my images/a,b.img"
				s.Firmware, s.UEFI, s.VarsFile = FirmwareUEFI, &UEFIFirmware{Device: "flash", Code: "/fw,1/code.fd",
					CodeFormat: "raw", VarsFormat: "raw"}, "/run,x/vars.fd"
				s.SerialSocket, s.SerialLog, s.QMPSocket = "/r,1/s.sock", "/r,1/s.log", "/r,1/q.sock"
			},
			want: [][]string{
				{"-drive", "if=none,id=boot0,file=/my images/a,,b.img,format=raw,discard=unmap"},
				{"-drive", "if=pflash,unit=0,format=raw,readonly=on,file=/fw,,1/code.fd"},
				{"-drive", "if=pflash,unit=1,format=raw,file=/run,,x/vars.fd"},
				{"-chardev", "socket,id=serial0,path=/r,,1/s.sock,server=on,wait=off,logfile=/r,,1/s.log,logappend=off"},
				{"-chardev", "socket,id=qmp0,path=/r,,1/q.sock,server=on,wait=off"},
			},
		},
		{
			name:   "persistent copy: no -snapshot",
			edit:   func(s *Spec) { s.Snapshot = false },
			absent: []string{"-snapshot"},
		},
		{
			name:   "KVM uses the host CPU",
			edit:   func(s *Spec) { s.Accel = AccelKVM },
			want:   [][]string{{"-machine", "q35,graphics=off", "-accel", "kvm", "-cpu", "host"}},
			absent: []string{"tcg,thread=multi"},
		},
		{
			name: "HVF uses the host CPU",
			edit: func(s *Spec) { s.Accel = AccelHVF },
			want: [][]string{{"-accel", "hvf", "-cpu", "host"}},
		},
		{
			name: "WHPX",
			edit: func(s *Spec) { s.Accel = AccelWHPX },
			want: [][]string{{"-accel", "whpx,kernel-irqchip=off", "-cpu", "max"}},
		},
		{
			name:   "window display with a tablet for the mouse",
			edit:   func(s *Spec) { s.Display, s.DisplayBackend = DisplayWindow, "gtk" },
			want:   [][]string{{"-machine", "q35"}, {"-display", "gtk"}, {"-device", "qemu-xhci,id=xhci"}, {"-device", "usb-tablet,bus=xhci.0"}},
			absent: []string{"q35,graphics=off"},
		},
		{
			name:   "VNC on a unix socket",
			edit:   func(s *Spec) { s.Display, s.VNCSocket = DisplayVNC, "/run/k/vnc.sock" },
			want:   [][]string{{"-machine", "q35"}, {"-display", "none", "-vnc", "unix:/run/k/vnc.sock"}},
			absent: []string{"q35,graphics=off"}, // the app shows the screen
		},
		{
			name: "paused start and extra arguments last",
			edit: func(s *Spec) { s.Paused, s.ExtraArgs = true, []string{"-d", "guest_errors"} },
			want: [][]string{{"-S", "-d", "guest_errors"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.edit(&s)
			args, err := CommandLine(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !hasSeq(args, w...) {
					t.Errorf("missing %q in\n%s", w, strings.Join(args, " "))
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(args, a) {
					t.Errorf("unexpected %q in\n%s", a, strings.Join(args, " "))
				}
			}
			if n := strings.Count(strings.Join(args, " "), "bootindex="); n != 1 {
				t.Errorf("%d boot devices, want exactly 1", n)
			}
		})
	}
}

func TestCommandLineRejectsUnresolvedSpecs(t *testing.T) {
	tests := map[string]func(*Spec){
		"auto format":          func(s *Spec) { s.Format = FormatAuto },
		"auto attach":          func(s *Spec) { s.Attach = AttachAuto },
		"auto accel":           func(s *Spec) { s.Accel = AccelAuto },
		"auto firmware":        func(s *Spec) { s.Firmware = FirmwareAuto },
		"UEFI without code":    func(s *Spec) { s.Firmware = FirmwareUEFI },
		"UEFI flash sans vars": func(s *Spec) { s.Firmware, s.UEFI = FirmwareUEFI, ovmf },
		"firmware file unset":  func(s *Spec) { s.Firmware = FirmwareFile },
		"relative image":       func(s *Spec) { s.Image = "kiln.img" },
		"no QMP socket":        func(s *Spec) { s.QMPSocket = "" },
		"VNC without socket":   func(s *Spec) { s.Display = DisplayVNC },
		"window sans toolkit":  func(s *Spec) { s.Display = DisplayWindow },
		"no SSH port":          func(s *Spec) { s.SSHPort = 0 },
		"no CPUs":              func(s *Spec) { s.CPUs = 0 },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			edit(&s)
			if _, err := CommandLine(s); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("err = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestProbeArgs(t *testing.T) {
	tests := []struct {
		accel Accel
		want  []string
	}{
		{AccelKVM, []string{"-accel", "kvm", "-cpu", "host"}},
		{AccelHVF, []string{"-accel", "hvf", "-cpu", "host"}},
		{AccelWHPX, []string{"-accel", "whpx,kernel-irqchip=off", "-cpu", "max"}},
		{AccelTCG, []string{"-accel", "tcg,thread=multi", "-cpu", "max"}},
	}
	for _, tt := range tests {
		args := probeArgs(tt.accel, "/p/probe.rom", "/p/q,1.sock")
		for _, w := range [][]string{tt.want, {"-bios", "/p/probe.rom"}, {"-device", "isa-debug-exit,iobase=0xf4,iosize=0x01"},
			{"-chardev", "socket,id=qmp0,path=/p/q,,1.sock,server=on,wait=off"}, {"-S"}} {
			if !hasSeq(args, w...) {
				t.Errorf("%s: missing %q in %q", tt.accel, w, args)
			}
		}
	}
}

func TestProbeROM(t *testing.T) {
	rom := probeROM()
	if len(rom) != 64<<10 {
		t.Fatalf("ROM is %d bytes, QEMU wants a multiple of 64 KiB", len(rom))
	}
	// The reset vector (0xfff0) must jump to the code at offset 0: E9 rel16 relative to 0xfff3.
	if rom[0xfff0] != 0xe9 || (0xfff3+(int(rom[0xfff1])|int(rom[0xfff2])<<8))&0xffff != 0 {
		t.Errorf("reset vector % x does not jump to offset 0", rom[0xfff0:0xfff3])
	}
	if rom[0] != 0xfa { // cli
		t.Errorf("code starts with %#x, want cli (0xfa)", rom[0])
	}
}
