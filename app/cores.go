package app

import (
	"context"
	"errors"
	"image"
	"io"
	"time"

	"github.com/kilnproject/kiln/internal/progress"
)

// The screens talk to the core packages only through the small interfaces in this file. The real
// adapters (cores_real.go) call assembler, flasher, vmrunner and ota; the fakes (fake.go) drive the
// tests, screenshots and benchmarks.

// Cores bundles what the four screens need.
type Cores struct {
	Build   BuildCore
	Flash   FlashCore
	Preview PreviewCore
	Serve   ServeCore
}

// Recipe is the part of a recipe the Build form edits. Fields the form does not show are kept in
// Base by the core that loaded the recipe and written back unchanged on save.
type Recipe struct {
	Path         string // file it was loaded from or saved to; "" for a new recipe
	Name         string
	Version      string
	Hostname     string
	User         string
	PasswordHash string // crypt(3) string, never the clear-text password
	SSHKeys      []string
	WifiSSID     string
	WifiPSK      string
	WifiCountry  string
	Timezone     string
	Files        []RecipeFile // single files placed in the image
	Overlays     []string     // folders or tarballs merged into the root filesystem
	DiskSize     string
	Board        string          // built-in board (pc, arm64-uefi, rpi) or board file
	Firmware     string          // uefi | bios | hybrid | rpi
	Packages     []string        // Debian packages: "python3", "python3 (>= 3.11)"
	Services     []RecipeService // programs started at boot
	Base         any             // the core's own representation of everything else
}

// RecipeService is a [[system.services]] entry.
type RecipeService struct {
	Name, Command string
	User          string // "": root
	Restart       string // "always" (""), "on-failure" or "no"
	AfterNetwork  bool
}

// RecipeFile is one extra file placed in the image: copied from Source, or holding Content.
type RecipeFile struct {
	Path    string // in the image
	Source  string // on this machine
	Content string // the text itself, when there is no Source
	Mode    uint32 // permission bits; 0 for the default (0644)
}

// FieldError is a validation message for one recipe field. Field uses the recipe's dotted names
// ("name", "system.hostname", "board.disk_size", …) so the form can show it beside the entry.
type FieldError struct {
	Field   string
	Message string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// BuildResult describes a finished image.
type BuildResult struct {
	Name, Version string
	Image         string // path of the raw disk image
	Bmap          string
	Manifest      string // path of manifest.json
	UpdateDir     string
	SHA256        string
	Size          int64
	Warnings      []string // what the build did that the user should check
}

// BuildCore loads, validates, saves and builds recipes.
type BuildCore interface {
	New() (*Recipe, error)
	Load(path string) (*Recipe, error)
	Save(r *Recipe, path string) error
	// Validate returns one message per invalid field; nil when the recipe can be built.
	Validate(r *Recipe) []FieldError
	Build(ctx context.Context, r *Recipe, p progress.Func) (*BuildResult, error)
	// Builds lists images built earlier (newest first), for the Flash and Preview pickers.
	Builds() []BuildResult
	// Packages loads the package index of the recipe's archive for its architecture (from the
	// cache when fresh; progress reports the download otherwise).
	Packages(ctx context.Context, r *Recipe, p progress.Func) (PackageIndex, error)
}

// PackageInfo is one package a search offers.
type PackageInfo struct {
	Name, Version, Description string
	Size, InstalledSize        int64 // bytes
}

// PackageEstimate is what a package list resolves to, with what a build adds for it.
type PackageEstimate struct {
	Count     int   // packages installed
	Download  int64 // bytes of .debs
	Installed int64 // bytes the packages take in the root file system
}

// PackageIndex searches one archive and resolves package lists against it; safe for concurrent use.
type PackageIndex interface {
	// Search returns up to n packages: names starting with query, names containing it, then
	// short descriptions containing it.
	Search(query string, n int) []PackageInfo
	// Estimate resolves packages as a build would; the error names an unsatisfiable chain or
	// suggests names for an unknown package.
	Estimate(ctx context.Context, packages []string) (*PackageEstimate, error)
}

// Partition is one partition of a device, as shown in the flash confirmation.
type Partition struct {
	Name, Label, FSType, Mountpoint string
	Size                            int64
}

// Device is a drive the user may flash.
type Device struct {
	Path       string // /dev/sdb
	Model      string
	Vendor     string
	Serial     string
	Bus        string // usb, mmc, …
	Size       int64
	Removable  bool
	Partitions []Partition
	// Mounts are the drive's mounted file systems (under /media, /mnt, a temporary directory):
	// flashing unmounts them first.
	Mounts []string
}

// HiddenDevice is a drive Kiln refuses to offer, with the reason shown under "why not?".
type HiddenDevice struct {
	Device
	Reason string
}

// FlashResult is the outcome for one device.
type FlashResult struct {
	Device   string
	Written  int64
	Verified bool
	Elapsed  time.Duration
	Err      error
	Note     string // what first-boot settings did, or why they were not written
}

// FlashCore enumerates devices and writes images to them.
type FlashCore interface {
	Devices(ctx context.Context) (offered []Device, hidden []HiddenDevice, err error)
	// Changes signals (without blocking) whenever drives may have been plugged or pulled, until ctx ends.
	Changes(ctx context.Context) <-chan struct{}
	// Flash writes image to every device in parallel and verifies it; progress events carry the
	// device in Event.Device. The error is for the whole operation; per-device errors are in the results.
	Flash(ctx context.Context, image string, devices []string, p progress.Func) ([]FlashResult, error)
	// Advice says what the user can do about a flashing error.
	Advice(err error) string
}

// PreviewOptions chooses how the VM boots.
type PreviewOptions struct {
	Image    string
	Firmware string // "uefi", "bios", or a firmware file path
	AsUSB    bool   // attach as a USB stick instead of a virtio disk
	MemoryMB int
}

// VM is a running preview.
type VM interface {
	// Serial is the guest's serial console output; SerialIn writes keystrokes to it.
	Serial() io.Reader
	SerialIn() io.Writer
	// VNCSocket is the path of the VNC unix socket, "" when the screen is only available through Screendump.
	VNCSocket() string
	Screendump(ctx context.Context) (image.Image, error)
	// Accelerator names the accelerator in use (kvm, hvf, whpx, tcg) and why it was chosen.
	Accelerator() (name, reason string)
	Stop() error
	// Done is closed when the VM has exited; Err then returns why (nil on a clean shutdown).
	Done() <-chan struct{}
	Err() error
}

// PreviewCore starts VMs.
type PreviewCore interface {
	Start(ctx context.Context, o PreviewOptions) (VM, error)
	// Firmware is the firmware the image boots with unless the user chooses: "uefi" or "bios".
	Firmware(image string) (string, error)
}

// PublishedVersion is one version in the update repository.
type PublishedVersion struct {
	Name, Version, Channel string
	MinFrom, MaxFrom       string
	Size                   int64
	Published              time.Time
}

// DeviceStatus is a device the server has heard from.
type DeviceStatus struct {
	ID, Hostname, Address, Version string
	State                          string // downloading, installing, healthy, rolled-back, …
	LastSeen                       time.Time
}

// RolloutStatus is how far a published version is rolled out.
type RolloutStatus struct {
	Version, Share string // Share: "10%"
	Paused         bool
	Reason         string // why it is paused
	Tried, Failed  int    // devices that installed it, of them rolled back
}

// DeviceEvent is one entry of a device's history.
type DeviceEvent struct {
	Time                            time.Time
	State, Version, Target, Message string
}

// ServeCore runs the LAN update server and publishes builds into its repository.
type ServeCore interface {
	Start(ctx context.Context, addr string) (url string, err error)
	Stop() error
	Running() bool
	Versions() ([]PublishedVersion, error)
	Devices() []DeviceStatus
	// Rollouts are the staged rollouts (kiln rollout), History a device's history, newest
	// first; both while the server runs.
	Rollouts() []RolloutStatus
	History(id string) ([]DeviceEvent, error)
	Publish(ctx context.Context, b *BuildResult) (*PublishedVersion, error)
	// Warning is what the running server cannot do ("timestamp will not be re-signed: …"), or "".
	Warning() string
}

// errNotReady is returned by an adapter whose core package is not available in this build.
var errNotReady = errors.New("not available in this build of Kiln")
