package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/internal/progress"
)

// Fake cores: deterministic stand-ins for the core packages. The tests use them, and so does the
// demo mode (KILN_DEMO=1) that the screenshot test and the benchmarks run, so no real drive or VM is
// touched there. Each fake can be paused between steps (Gate) so a test can act mid-operation.

// FakeCores returns a fresh set of fakes.
func FakeCores() (Cores, *FakeBuild, *FakeFlash, *FakePreview, *FakeServe) {
	b, f, p, s := &FakeBuild{Steps: 4}, NewFakeFlash(), &FakePreview{}, &FakeServe{}
	return Cores{Build: b, Flash: f, Preview: p, Serve: s}, b, f, p, s
}

// FakeBuild pretends to build. When Gate is set, each step waits for a value on it.
type FakeBuild struct {
	Steps int
	Gate  chan struct{}
	Delay time.Duration // per step, for the demo mode
	// PackagesErr makes Packages fail (no archive configured, mirror unreachable).
	PackagesErr error

	mu         sync.Mutex
	indexLoads int
	saved      map[string]Recipe
	builds     []BuildResult
}

func (b *FakeBuild) New() (*Recipe, error) {
	return &Recipe{Name: "kiln-tiny", Version: "1.0.0", Hostname: "kiln", Timezone: "UTC",
		DiskSize: "512MiB", Board: "pc", Firmware: "uefi"}, nil
}

func (b *FakeBuild) Load(path string) (*Recipe, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.saved[path]
	if !ok {
		return nil, fmt.Errorf("load recipe %s: no such file", path)
	}
	return &r, nil
}

func (b *FakeBuild) Save(r *Recipe, path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.saved == nil {
		b.saved = map[string]Recipe{}
	}
	b.saved[path] = *r
	return nil
}

func (b *FakeBuild) Validate(r *Recipe) []FieldError {
	var errs []FieldError
	if r.Name == "" {
		errs = append(errs, FieldError{"name", "is required"})
	} else if strings.ContainsAny(r.Name, " /") {
		errs = append(errs, FieldError{"name", "may only contain letters, digits, '-', '_' and '.'"})
	}
	if r.Version == "" {
		errs = append(errs, FieldError{"version", "is required (for example 1.0.0)"})
	}
	if strings.Contains(r.Hostname, "_") {
		errs = append(errs, FieldError{"system.hostname", "must be a DNS name: letters, digits and '-'"})
	}
	return errs
}

func (b *FakeBuild) Build(ctx context.Context, r *Recipe, p progress.Func) (*BuildResult, error) {
	phases := []string{"inputs", "initramfs", "uki", "image"}
	for i := range b.Steps {
		if b.Gate != nil {
			select {
			case <-b.Gate:
			case <-ctx.Done():
				return nil, fmt.Errorf("build %s: %w", r.Name, ctx.Err())
			}
		}
		if b.Delay > 0 {
			select {
			case <-time.After(b.Delay):
			case <-ctx.Done():
				return nil, fmt.Errorf("build %s: %w", r.Name, ctx.Err())
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("build %s: %w", r.Name, err)
		}
		p.Report(progress.Event{Phase: phases[i%len(phases)], Done: int64(i + 1), Total: int64(b.Steps),
			Message: "step " + phases[i%len(phases)]})
	}
	res := BuildResult{Name: r.Name, Version: r.Version,
		Image:     "/home/user/kiln/out/" + r.Name + "-" + r.Version + "/" + r.Name + ".img",
		Bmap:      "/home/user/kiln/out/" + r.Name + "-" + r.Version + "/" + r.Name + ".img.bmap",
		Manifest:  "",
		UpdateDir: "/home/user/kiln/out/" + r.Name + "-" + r.Version + "/update",
		SHA256:    "9f2c4e8a1b7d3f60c5e9a2d4b8f1c3e7a6d5b4c3e2f1a0b9c8d7e6f5a4b3c2d1",
		Size:      512 << 20}
	b.mu.Lock()
	b.builds = append([]BuildResult{res}, b.builds...)
	b.mu.Unlock()
	return &res, nil
}

func (b *FakeBuild) Builds() []BuildResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BuildResult(nil), b.builds...)
}

// FakeFlash offers one USB stick and an SD card and hides the system disk.
type FakeFlash struct {
	Gate    chan struct{}
	Chunks  int           // progress events per device
	Delay   time.Duration // between chunks, for the demo mode and benchmarks
	changes chan struct{}

	mu       sync.Mutex
	offered  []Device
	hidden   []HiddenDevice
	Flashed  []string            // devices written, in order
	settings *customise.Settings // the first-boot settings of the last flash
	// LAN is the catalogue URL of the Kiln server the fake finds on the LAN ("" for none).
	LAN string
}

func (f *FakeFlash) LANCatalogue(ctx context.Context) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.LAN == "" {
		return "", "", errors.New("no update server found on the LAN")
	}
	return "desk", f.LAN, nil
}

// NewFakeFlash returns a fake with a typical set of drives.
func NewFakeFlash() *FakeFlash {
	return &FakeFlash{
		Chunks:  8,
		changes: make(chan struct{}, 1),
		offered: []Device{
			{Path: "/dev/sdb", Vendor: "SanDisk", Model: "Ultra Fit", Serial: "4C530001", Bus: "usb",
				Size: 32015679488, Removable: true, Partitions: []Partition{
					{Name: "sdb1", Label: "PHOTOS", FSType: "vfat", Size: 32014630912}}},
			{Path: "/dev/mmcblk0", Vendor: "", Model: "SD SC16G", Bus: "mmc", Size: 15931539456,
				Removable: true, Partitions: []Partition{
					{Name: "mmcblk0p1", Label: "boot", FSType: "vfat", Size: 268435456},
					{Name: "mmcblk0p2", Label: "rootfs", FSType: "ext4", Size: 15662039040}}},
		},
		hidden: []HiddenDevice{{Device: Device{Path: "/dev/nvme0n1", Model: "Samsung SSD 980", Bus: "nvme",
			Size: 500107862016}, Reason: "holds / (the running system)"}},
	}
}

// Plug adds a device and signals a change, as a hot-plug would.
func (f *FakeFlash) Plug(d Device) {
	f.mu.Lock()
	f.offered = append(f.offered, d)
	f.mu.Unlock()
	f.signal()
}

// Unplug removes a device and signals a change.
func (f *FakeFlash) Unplug(path string) {
	f.mu.Lock()
	for i, d := range f.offered {
		if d.Path == path {
			f.offered = append(f.offered[:i:i], f.offered[i+1:]...)
			break
		}
	}
	f.mu.Unlock()
	f.signal()
}

func (f *FakeFlash) signal() {
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *FakeFlash) Devices(context.Context) ([]Device, []HiddenDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Device(nil), f.offered...), append([]HiddenDevice(nil), f.hidden...), nil
}

func (f *FakeFlash) Changes(ctx context.Context) <-chan struct{} { return f.changes }

func (f *FakeFlash) Flash(ctx context.Context, img string, devs []string, p progress.Func) ([]FlashResult, error) {
	const size = 512 << 20
	var res []FlashResult
	for _, d := range devs {
		f.mu.Lock()
		ok := false
		for _, o := range f.offered {
			ok = ok || o.Path == d
		}
		f.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("flash %s: not an offered device (refused)", d)
		}
		res = append(res, FlashResult{Device: d})
	}
	for _, phase := range []string{"writing", "verifying"} {
		for i := 1; i <= f.Chunks; i++ {
			if f.Gate != nil {
				select {
				case <-f.Gate:
				case <-ctx.Done():
				}
			}
			if f.Delay > 0 {
				select {
				case <-time.After(f.Delay):
				case <-ctx.Done():
				}
			}
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("flash %s: %w", img, err)
			}
			for _, d := range devs {
				p.Report(progress.Event{Phase: phase, Device: d, Done: int64(i) * size / int64(f.Chunks), Total: size})
			}
		}
	}
	for i := range res {
		res[i].Written, res[i].Verified, res[i].Elapsed = size, true, 42*time.Second
	}
	f.mu.Lock()
	f.Flashed = append(f.Flashed, devs...)
	f.mu.Unlock()
	return res, nil
}

func (f *FakeFlash) Advice(err error) string {
	return "Plug the drive in again and retry."
}

// FakePreview starts VMs that print a boot log and show a still screen.
type FakePreview struct {
	mu      sync.Mutex
	Started []PreviewOptions
}

func (p *FakePreview) Start(ctx context.Context, o PreviewOptions) (VM, error) {
	p.mu.Lock()
	p.Started = append(p.Started, o)
	p.mu.Unlock()
	pr, pw := io.Pipe()
	vm := &fakeVM{out: pr, done: make(chan struct{})}
	go func() {
		fmt.Fprint(pw, "BdsDxe: loading Boot0001 \"UEFI QEMU HARDDISK\"\r\n"+
			"Linux version 6.1.0-44-amd64\r\nkiln: ready name=kiln-tiny version=1.0.0 hostname=kiln\r\n")
		<-vm.done
		pw.Close()
	}()
	return vm, nil
}

// Firmware inspects the image as the real core does, so the screen's choice can be tested with images.
func (p *FakePreview) Firmware(image string) (string, error) { return imageFirmware(image) }

type fakeVM struct {
	out  io.Reader
	in   bytes.Buffer
	once sync.Once
	done chan struct{}
}

func (v *fakeVM) Serial() io.Reader   { return v.out }
func (v *fakeVM) SerialIn() io.Writer { return &v.in }
func (v *fakeVM) VNCSocket() string   { return "" }
func (v *fakeVM) Screendump(context.Context) (image.Image, error) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 400))
	for y := range 400 {
		for x := range 640 {
			img.Set(x, y, color.RGBA{0x10, 0x12, 0x18, 0xff})
		}
	}
	for y := 20; y < 36; y++ { // a "text line" so the frame is not blank
		for x := 20; x < 300; x++ {
			img.Set(x, y, color.RGBA{0xc0, 0xc0, 0xc0, 0xff})
		}
	}
	return img, nil
}
func (v *fakeVM) Accelerator() (string, string) {
	return "tcg", "/dev/kvm is not usable by this user; using software emulation"
}
func (v *fakeVM) Stop() error           { v.once.Do(func() { close(v.done) }); return nil }
func (v *fakeVM) Done() <-chan struct{} { return v.done }
func (v *fakeVM) Err() error            { return nil }

// FakeServe keeps versions and devices in memory.
type FakeServe struct {
	mu       sync.Mutex
	running  bool
	addr     string
	versions []PublishedVersion
	Starts   int
	Stops    int
	// Warn is what Warning returns while running.
	Warn string
}

func (s *FakeServe) Start(ctx context.Context, addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return "", fmt.Errorf("serve %s: already running", addr)
	}
	s.running, s.addr = true, addr
	s.Starts++
	return "http://" + addr + "/", nil
}

func (s *FakeServe) Warning() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return ""
	}
	return s.Warn
}

func (s *FakeServe) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		s.Stops++
	}
	s.running = false
	return nil
}

func (s *FakeServe) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

func (s *FakeServe) Versions() ([]PublishedVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PublishedVersion(nil), s.versions...), nil
}

func (s *FakeServe) Devices() []DeviceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	seen := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	return []DeviceStatus{
		{ID: "a1b2c3", Hostname: "kiln-livingroom", Address: "192.168.1.23", Version: "1.0.0", State: "healthy", LastSeen: seen},
		{ID: "d4e5f6", Hostname: "kiln-garage", Address: "192.168.1.42", Version: "0.9.0", State: "downloading", LastSeen: seen},
	}
}

func (s *FakeServe) Rollouts() []RolloutStatus {
	if !s.Running() {
		return nil
	}
	return []RolloutStatus{{Version: "1.1.0", Share: "10%", Paused: true, Tried: 1, Failed: 1,
		Reason: "paused automatically: 1 of 1 devices that installed 1.1.0 rolled back (more than 20%)"}}
}

func (s *FakeServe) History(id string) ([]DeviceEvent, error) {
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	switch id {
	case "a1b2c3":
		return []DeviceEvent{
			{Time: at, State: "healthy", Version: "1.0.0", Target: "1.0.0", Message: "health check passed"},
			{Time: at.Add(-time.Minute), State: "installed", Version: "0.9.0", Target: "1.0.0", Message: "next boot: kiln-tiny-1.0.0+3.efi"},
			{Time: at.Add(-2 * time.Minute), State: "update-available", Version: "0.9.0", Target: "1.0.0"},
		}, nil
	case "d4e5f6":
		return []DeviceEvent{{Time: at, State: "downloading", Version: "0.9.0", Target: "1.0.0"}}, nil
	}
	return nil, nil
}

func (s *FakeServe) Publish(ctx context.Context, b *BuildResult) (*PublishedVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := PublishedVersion{Name: b.Name, Version: b.Version, Channel: "stable", MinFrom: "0.0.0",
		Size: b.Size, Published: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	s.versions = append(s.versions, v)
	return &v, nil
}

// fakeArchive is a small Debian archive (name, version, Depends, Installed-Size in KiB, download
// size, short description) for the tests and the demo mode; mqtt-bridge cannot be installed.
var fakeArchive = []struct {
	name, version, fields, desc string
	kib, size                   int64
}{
	{"base-files", "12.4+deb12u5", "Essential: yes\nPriority: required", "Debian base system miscellaneous files", 341, 70560},
	{"dash", "0.5.12-2", "Essential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.34)", "POSIX-compliant shell", 191, 91200},
	{"libc6", "2.36-9+deb12u4", "", "GNU C Library: Shared libraries", 12986, 2757000},
	{"libssl3", "3.0.11-1~deb12u2", "Depends: libc6 (>= 2.34)", "Secure Sockets Layer toolkit - shared libraries", 5763, 2025000},
	{"libwrap0", "7.6.q-32", "Depends: libc6", "Wietse Venema's TCP wrappers library", 106, 52000},
	{"adduser", "3.134", "Architecture: all", "add and remove users and groups", 849, 200600},
	{"mosquitto", "2.0.11-1.2+deb12u1", "Depends: libc6, libssl3 (>= 3.0.0), libwrap0, adduser", "MQTT version 5.0/3.1.1/3.1 compatible message broker", 727, 243000},
	{"mosquitto-clients", "2.0.11-1.2+deb12u1", "Depends: libc6, libssl3", "Mosquitto command line MQTT clients", 214, 80000},
	{"mqtt-bridge", "0.9-1", "Depends: mosquitto, libssl3 (>= 3.2)", "bridge between MQTT brokers", 90, 30000},
	{"python3", "3.11.2-1+b1", "Depends: python3.11 (>= 3.11.2-1~), libpython3-stdlib", "interactive high-level object-oriented language (default python3 version)", 83, 26000},
	{"python3.11", "3.11.2-6+deb12u2", "Depends: libpython3.11-stdlib, libc6", "Interactive high-level object-oriented language (version 3.11)", 2104, 573000},
	{"libpython3.11-stdlib", "3.11.2-6+deb12u2", "Depends: libc6, libssl3", "Interactive high-level object-oriented language (standard library, version 3.11)", 7918, 1798000},
	{"libpython3-stdlib", "3.11.2-1+b1", "Depends: libpython3.11-stdlib", "interactive high-level object-oriented language (default python3 version)", 25, 9000},
	{"python3-yaml", "6.0-3+b2", "Depends: python3", "YAML parser and emitter for Python3", 767, 148000},
	{"python3-paho-mqtt", "1.6.1-1", "Architecture: all\nDepends: python3", "MQTT client class (Python 3)", 337, 59000},
	{"dropbear", "2022.83-1+deb12u1", "Depends: dropbear-bin, libc6\nProvides: ssh-server", "lightweight SSH2 server and client - startup scripts", 40, 17000},
	{"dropbear-bin", "2022.83-1+deb12u1", "Depends: libc6", "lightweight SSH2 server and client - command line tools", 534, 232000},
	{"openssh-server", "1:9.2p1-2+deb12u3", "Depends: libc6, libssl3, adduser\nProvides: ssh-server", "secure shell (SSH) server, for secure access from remote machines", 1954, 457000},
	{"wpasupplicant", "2:2.10-12", "Depends: libc6, libssl3", "client support for WPA and WPA2 (IEEE 802.11i)", 3917, 1480000},
}

// fakePackageIndex indexes fakeArchive the way the real core indexes a Debian archive.
func fakePackageIndex() (PackageIndex, error) {
	var b strings.Builder
	for _, p := range fakeArchive {
		arch := "amd64"
		fields := p.fields
		if strings.HasPrefix(fields, "Architecture: all") {
			arch, fields = "all", strings.TrimPrefix(strings.TrimPrefix(fields, "Architecture: all"), "\n")
		}
		fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.name, p.version, arch)
		if fields != "" {
			b.WriteString(fields + "\n")
		}
		sum := sha256.Sum256([]byte(p.name + p.version))
		fmt.Fprintf(&b, "Installed-Size: %d\nFilename: pool/main/%s/%s/%s_%s_%s.deb\nSize: %d\nSHA256: %x\nDescription: %s\n long description\n\n",
			p.kib, p.name[:1], p.name, p.name, strings.ReplaceAll(p.version, ":", "_"), arch, p.size, sum, p.desc)
	}
	a := archive.NewArchive("amd64")
	if err := a.Add(&archive.Origin{URI: "http://archive.invalid/debian", Suite: "bookworm", Component: "main", Priority: 500},
		strings.NewReader(b.String())); err != nil {
		return nil, err
	}
	return archiveIndex{archive.NewIndex(a)}, nil
}

// Packages indexes the fake archive, or fails with PackagesErr.
func (b *FakeBuild) Packages(ctx context.Context, r *Recipe, p progress.Func) (PackageIndex, error) {
	b.mu.Lock()
	b.indexLoads++
	err := b.PackagesErr
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p.Report(progress.Event{Phase: "indices", Done: 1, Total: 1, Message: "bookworm main"})
	return fakePackageIndex()
}
