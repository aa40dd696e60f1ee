// Package assembler turns a recipe into a bootable, reproducible UEFI disk image: it resolves the
// input packages, picks the kernel modules, builds the initramfs and the unified kernel image, lays
// out the GPT disk with its FAT32 partitions, and writes the block map, the manifest and the update
// bundle next to the image.
//
// Build writes into a temporary directory beside the output directory and renames it into place at
// the end, so a failed or cancelled build leaves nothing behind. The same recipe, inputs and
// SOURCE_DATE_EPOCH give byte-identical outputs.
package assembler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/board"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/disk"
	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/bmap"
	"github.com/kilnproject/kiln/internal/progress"
	"github.com/kilnproject/kiln/internal/version"
)

// Options configure a build.
type Options struct {
	OutDir string // where the outputs go; replaced if it holds a previous build
	// Cache is the input cache: downloaded packages in Cache/sha256/<sha256>; packages put into
	// Cache/debs (Cache/debs-arm64 for arm64 images) by hand are used when there is no lockfile.
	Cache string
	// Lock is the lockfile; "": LockPath. A missing lockfile is written after resolving.
	Lock  string
	HTTP  *http.Client // for the archive; nil: a client with timeouts
	Agent string       // the kiln-agent binary placed at /usr/bin/kiln-agent
	// TrustedRoot is the OTA trust root (TUF root metadata) placed at /etc/kiln/root.json; nil: none.
	TrustedRoot     []byte
	SourceDateEpoch int64 // the timestamp of every file in the image
	Progress        progress.Func
	Log             *logrus.Logger
}

// Result describes a finished build. Paths are inside Options.OutDir.
type Result struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Image       string `json:"image"`
	Bmap        string `json:"bmap"`
	Manifest    string `json:"manifest"`
	SBOM        string `json:"sbom"` // CycloneDX 1.5 JSON
	UpdateDir   string `json:"update_dir"`
	UKI         string `json:"uki"`            // the UKI inside UpdateDir
	ISO         string `json:"iso,omitempty"`  // the ISO image, when the recipe asks for one
	Root        string `json:"root,omitempty"` // the root filesystem image inside UpdateDir (package images)
	ImageSHA256 string `json:"image_sha256"`
	ImageSize   int64  `json:"image_size"`
	MappedBytes int64  `json:"mapped_bytes"` // bytes of the image holding data (what a flash writes)
	// Warnings are things the build did but the user should check, such as copying a private
	// file from outside the recipe's folder; each was also logged and reported as progress.
	Warnings []string `json:"warnings,omitempty"`
}

// BlockSize is the block size of the images' block maps.
const BlockSize = 4096

// Errors a front end branches on.
var (
	// ErrOptions: a required option is missing.
	ErrOptions = errors.New("incomplete build options")
	// ErrUnsupported: the recipe asks for something this kiln cannot build yet.
	ErrUnsupported = errors.New("not supported")
)

// Progress phases reported by Build, in order.
const (
	PhaseInputs    = "inputs"    // reading input packages and files
	PhaseInitramfs = "initramfs" // building the root filesystem archive
	PhaseUKI       = "uki"       // building the unified kernel image
	PhaseDisk      = "disk"      // writing the disk image (Device: the partition)
	PhaseHash      = "hash"      // block map and checksums
	PhaseFinish    = "finish"    // manifest, update bundle, moving into place
)

// ImageName is the disk image's file name for a recipe.
func ImageName(r *recipe.Recipe) string { return r.Name + ".img" }

// Build builds the image r describes. On error or cancellation no output is left behind.
func Build(ctx context.Context, r *recipe.Recipe, opts Options) (res *Result, err error) {
	switch {
	case r == nil:
		return nil, fmt.Errorf("build: %w: no recipe", ErrOptions)
	case opts.OutDir == "":
		return nil, fmt.Errorf("build %s: %w: no output directory", r.Name, ErrOptions)
	case opts.Agent == "":
		return nil, fmt.Errorf("build %s: %w: no kiln-agent binary (run `make build`, or set KILN_AGENT)", r.Name, ErrOptions)
	}
	if opts.Log == nil {
		opts.Log = logrus.New()
		opts.Log.SetOutput(io.Discard)
	}
	if opts.Cache == "" {
		opts.Cache = filepath.Dir(deb.CacheDir())
	}
	st, err := newStage(opts.OutDir, ImageName(r))
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", r.Name, err)
	}
	defer func() {
		if err != nil {
			st.abort()
		}
	}()
	start := time.Now()
	b := &builder{r: r, opts: opts, st: st, log: opts.Log.WithField("recipe", r.Name), prog: opts.Progress}
	if err := b.run(ctx); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%v)", ctxErr, err)
		}
		return nil, fmt.Errorf("build %s: %w", r.Name, err)
	}
	if err := st.commit(); err != nil {
		return nil, fmt.Errorf("build %s: %w", r.Name, err)
	}
	out := st.out
	b.res.Image = filepath.Join(out, ImageName(r))
	b.res.Bmap = b.res.Image + ".bmap"
	b.res.Manifest = filepath.Join(out, "manifest.json")
	b.res.SBOM = filepath.Join(out, SBOMName(r.Name))
	b.res.UpdateDir = filepath.Join(out, "update")
	b.res.UKI = filepath.Join(b.res.UpdateDir, ukiName(r))
	if b.manifest.Root != nil {
		b.res.Root = filepath.Join(b.res.UpdateDir, b.manifest.Root.File)
	}
	if b.manifest.ISO != nil {
		b.res.ISO = filepath.Join(out, b.manifest.ISO.File)
	}
	b.log.WithFields(logrus.Fields{"image": b.res.Image, "size": b.res.ImageSize, "sha256": b.res.ImageSHA256,
		"seconds": time.Since(start).Seconds()}).Info("image built")
	return b.res, nil
}

// builder carries one build's state.
type builder struct {
	r     *recipe.Recipe
	board *board.Board // the recipe's board
	opts  Options
	st    *stage
	log   *logrus.Entry
	prog  progress.Func

	inputs   inputs
	root     *rootImage // the root filesystem of a package image (usesRoot); nil: root in the initramfs
	store    *lockStore // nil: packages from Cache/debs only
	manifest Manifest
	res      *Result
	written  [][2]int64 // the disk image's written byte ranges: its block map

	phaseName  string
	phaseStart time.Time

	mu       sync.Mutex
	warnings []string
}

// warn logs a warning, reports it as progress and keeps it for the result.
func (b *builder) warn(msg string) {
	b.log.Warn(msg)
	b.prog.Report(progress.Event{Phase: PhaseInputs, Message: "warning: " + msg})
	b.mu.Lock()
	b.warnings = append(b.warnings, msg)
	b.mu.Unlock()
}

// phase starts a build phase: it reports it and logs how long the previous one took.
func (b *builder) phase(name, msg string, total int64) {
	b.endPhase()
	b.phaseName, b.phaseStart = name, time.Now()
	b.prog.Phase(name, msg, total)
}

func (b *builder) endPhase() {
	if b.phaseName != "" {
		b.log.WithFields(logrus.Fields{"phase": b.phaseName, "seconds": time.Since(b.phaseStart).Seconds()}).Debug("phase done")
	}
}

func (b *builder) run(ctx context.Context) error {
	r := b.r
	b.manifest = Manifest{Format: ManifestFormat, Kiln: version.Version, Name: r.Name, Version: r.Version,
		Arch: r.Arch, SourceDateEpoch: b.opts.SourceDateEpoch}

	bd, err := r.LoadBoard()
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	b.board = bd
	b.manifest.Board = BoardInfo{Name: bd.Name, Firmware: r.Board.Firmware, Machine: bd.Preview.Machine}

	b.phase(PhaseInputs, "reading input packages", 0)
	if err := b.readInputs(ctx); err != nil {
		return err
	}
	in := &b.inputs

	b.phase(PhaseInitramfs, "building the initramfs", 0)
	rd, err := b.initramfs(ctx)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	b.phase(PhaseUKI, "building the unified kernel image", 0)
	osrel := osRelease(r)
	cmdline := r.Kernel.Cmdline
	if b.root != nil {
		cmdline = strings.TrimSpace(cmdline + " kiln.root=" + b.root.id)
	}
	ukiData, err := uki.Build(uki.Input{Stub: in.stub, Kernel: in.kernel.image, Initrd: rd.Data,
		Cmdline: cmdline, OSRelease: string(osrel), Uname: in.kernel.release})
	if err != nil {
		return fmt.Errorf("unified kernel image: %w", err)
	}
	if err := b.recordUKI(ukiData, in.kernel.release); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// The update bundle does not depend on the disk: write it while the disk is written.
	var bundleErr error
	bundleDone := make(chan struct{})
	go func() {
		defer close(bundleDone)
		_, bundleErr = writeBundle(b.st.path("update"), r, ukiData, b.manifest.UKI.SHA256, b.root)
	}()
	defer func() { <-bundleDone }() // never remove the build directory while it is written to

	img := b.st.path(ImageName(r))
	if isPi(r) {
		if err := b.writePiImage(ctx, img, rd.Data); err != nil {
			return err
		}
	} else {
		espFiles, err := b.espFiles(ukiData, rd.Data)
		if err != nil {
			return err
		}
		espFiles = append(espFiles, b.cloudInitSeed()...)
		if err := b.writeDisk(ctx, img, espFiles); err != nil {
			return err
		}
	}
	if r.Outputs.ISO {
		if err := b.writeISO(ctx, ukiData, rd.Data); err != nil {
			return err
		}
	}
	<-bundleDone
	if bundleErr != nil {
		return bundleErr
	}
	if err := b.finish(ctx, img); err != nil {
		return err
	}
	b.endPhase()
	return nil
}

// initramfs builds the root filesystem archive and records its files.
func (b *builder) initramfs(ctx context.Context) (*initramfs.Result, error) {
	r, in := b.r, &b.inputs
	rel, err := releaseJSON(r)
	if err != nil {
		return nil, err
	}
	spec := initramfs.Spec{
		Name: r.Name, Version: r.Version, Hostname: r.System.Hostname, Timezone: r.System.Timezone,
		ConsoleShell: r.System.ConsoleShell(), Serial: b.board.Kernel.Console,
		Busybox: in.busybox, Agent: in.agent,
		Kernel: initramfs.Modules{Release: in.kernel.release, Files: in.kernel.modules, Load: in.kernel.load, Dep: in.kernel.dep},
		Users:  in.users, OSRelease: osRelease(r), Release: rel, TrustedRoot: b.opts.TrustedRoot,
		DataLabel: r.Data.Label, ESPName: espName, Packages: in.packages, Extra: in.extra, SourceDateEpoch: b.opts.SourceDateEpoch,
	}
	for _, sv := range r.System.Services {
		spec.Services = append(spec.Services, initramfs.Service{Name: sv.Name, Command: sv.Command, User: sv.User,
			Restart: sv.Restart, AfterNetwork: sv.AfterNetwork})
	}
	spec.Services = append(spec.Services, in.services...)
	if w := r.System.WiFi; w != nil {
		spec.WiFi = &initramfs.WiFi{SSID: w.SSID, PSK: w.PSK, Country: w.Country}
	}
	build := initramfs.Build
	if usesRoot(r) { // the root goes on its partitions; the initramfs only mounts it
		if b.root, err = b.buildRoot(ctx, spec); err != nil {
			return nil, err
		}
		spec.Kernel.Load = bootModules(r, spec.Kernel.Load)
		build = initramfs.BuildBoot
	}
	rd, err := build(ctx, spec)
	if err != nil {
		return nil, err
	}
	for _, f := range rd.Files {
		if pf, ok := placed("initramfs:", f.Path, f.Mode, f.Data, f.Target, f.Origin); ok {
			b.manifest.Files = append(b.manifest.Files, pf)
		}
	}
	b.log.WithFields(logrus.Fields{"files": len(rd.Files), "size": len(rd.Data), "uncompressed": rd.Size,
		"compression": rd.Compression}).Debug("initramfs built")
	return rd, nil
}

// recordUKI records the UKI and its sections in the manifest.
func (b *builder) recordUKI(data []byte, release string) error {
	secs, err := uki.Sections(data)
	if err != nil {
		return fmt.Errorf("unified kernel image: read back: %w", err)
	}
	info := UKIInfo{File: "/EFI/Linux/" + ukiName(b.r), Size: int64(len(data)), SHA256: sha256Hex(data), Uname: release}
	for _, s := range secs {
		info.Sections = append(info.Sections, UKISection{Name: s.Name, Size: int64(len(s.Data)), SHA256: sha256Hex(s.Data)})
	}
	b.manifest.UKI = info
	return nil
}

// espName is the GPT name of the EFI system partition; the image's init finds the ESP by it.
const espName = "ESP"

// dataName is the GPT name of the data partition.
const dataName = "data"

// espFiles lays out the EFI system partition: systemd-boot as the removable-media boot loader
// (EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI on arm64) and at its own path, its configuration, and the UKI under EFI/Linux where
// systemd-boot finds unified kernel images by itself (Boot Loader Specification type #2).
//
// A BIOS image keeps the UKI (the update agent's unit of update) without systemd-boot, and adds
// GRUB's files (biosESPFiles).
func (b *builder) espFiles(ukiData, initrd []byte) ([]fat.File, error) {
	in := &b.inputs
	files := []fat.File{{Path: "EFI/Linux/" + ukiName(b.r), Data: ukiData}}
	removable := "EFI/BOOT/BOOT" + strings.ToUpper(efiArch(b.r)) + ".EFI"
	own := "EFI/systemd/systemd-boot" + efiArch(b.r) + ".efi"
	if b.r.Board.UEFI() {
		files = append(files,
			fat.File{Path: removable, Data: in.bootloader},
			fat.File{Path: own, Data: in.bootloader},
			fat.File{Path: "loader/loader.conf", Data: loaderConf(b.r)},
			fat.File{Path: "loader/entries", Dir: true})
	}
	origin := map[string]string{
		removable:                   in.bootloaderOrigin,
		own:                         in.bootloaderOrigin,
		"EFI/Linux/" + ukiName(b.r): "kiln:uki",
		"loader/loader.conf":        "kiln:loader.conf",
	}
	for _, f := range files {
		if pf, ok := placed("esp:", f.Path, fileMode(f.Dir), f.Data, "", origin[f.Path]); ok {
			b.manifest.Files = append(b.manifest.Files, pf)
		}
	}
	if b.r.Board.BIOS() {
		bios, err := b.biosESPFiles(initrd)
		if err != nil {
			return nil, err
		}
		files = append(files, bios...)
	}
	return files, nil
}

// loaderConf is systemd-boot's loader.conf. It sets no "default": systemd-boot then boots the first
// entry in its order, which puts entries whose boot counter is used up ("name+0-3.efi") last and
// otherwise the highest version first. An update installed as "<name>-<new>+3.efi" is thus tried
// up to boot_tries times and, unless the agent blesses it (renames it without the counter), the
// previous version boots again by itself. "@saved" would pin one entry and defeat this.
func loaderConf(r *recipe.Recipe) []byte {
	return []byte("# systemd-boot configuration, written by kiln.\n" +
		"# No \"default\": the newest entry whose boot counter is not used up boots (A/B fallback).\n" +
		"timeout 0\n" +
		"editor no\n" +
		"auto-entries no\n" +
		"auto-firmware no\n" +
		"console-mode keep\n")
}

// writeDisk writes the GPT image with the ESP and the data partition.
func (b *builder) writeDisk(ctx context.Context, img string, esp []fat.File) error {
	r := b.r
	l := r.Board.Layout()
	layout := disk.Layout{
		Size: l.DiskSize, DiskGUID: stableGUID(r.Name, "disk"), ModTime: time.Unix(b.opts.SourceDateEpoch, 0).UTC(),
		Partitions: []disk.Partition{
			{Name: espName, Type: disk.TypeESP, Size: l.ESPSize, Label: "ESP", GUID: stableGUID(r.Name, "esp"),
				FS: disk.FSFAT32, Files: esp},
			{Name: dataName, Type: disk.TypeData, Size: l.DataSize, Label: r.Data.Label, GUID: stableGUID(r.Name, "data"),
				FS: disk.FSFAT32, Files: b.inputs.data},
		},
	}
	if !r.Board.UEFI() {
		layout.Partitions[0].Type = disk.TypeData // no EFI system partition: firmware and preview see a BIOS disk
	}
	if b.root != nil {
		size, err := rootSize(r, int64(len(b.root.data)))
		if err != nil {
			return err
		}
		data := layout.Partitions[1]
		if r.Board.DataSize == 0 {
			data.Size = 0 // the rest of the disk, after the root partitions
		}
		layout.Partitions = []disk.Partition{layout.Partitions[0],
			{Name: rootPartitions[0], Type: disk.TypeLinux, Size: size, GUID: stableGUID(r.Name, "root-a"), FS: disk.FSImage, Image: b.root.data},
			{Name: rootPartitions[1], Type: disk.TypeLinux, Size: size, GUID: stableGUID(r.Name, "root-b")},
			data}
		need := l.ESPOffset + l.ESPSize + 2*size + int64(recipe.MinFATPartition) + 1<<20
		if r.Board.DataSize != 0 {
			need = l.ESPOffset + l.ESPSize + 2*size + l.DataSize + 1<<20
		}
		if !r.IsSet("board.disk_size") {
			// The board's disk size is for the image without root partitions: add them.
			layout.Size = l.DiskSize + 2*size
		} else if need > l.DiskSize {
			return fmt.Errorf("board.disk_size: %d MiB do not hold the ESP, two root partitions of %d MiB (board.root_size) and the data partition: make it at least %d MiB",
				l.DiskSize>>20, size>>20, (need+(1<<20)-1)>>20)
		}
	}
	if r.Board.BIOS() {
		var err error
		if layout.BIOS, err = b.biosBoot(); err != nil {
			return err
		}
	}
	b.phase(PhaseDisk, "writing the disk image", layout.Size)
	dr, err := disk.Write(ctx, img, layout, b.prog)
	if err != nil {
		return err
	}
	b.written = dr.Written
	b.manifest.Image = ImageInfo{File: ImageName(r), Size: dr.Size, Arch: r.Arch, DiskGUID: layout.DiskGUID,
		Bmap: ImageName(r) + ".bmap"}
	for i, p := range dr.Partitions {
		lp := layout.Partitions[i]
		b.manifest.Partitions = append(b.manifest.Partitions, Partition{Number: p.Index, Name: p.Name, Label: lp.Label,
			Type: lp.Type, GUID: p.GUID, FS: p.FS, Offset: p.Start, Size: p.Size})
	}
	if p := dr.BIOSBoot; p != nil {
		b.manifest.Partitions = append(b.manifest.Partitions, Partition{Number: p.Index, Name: p.Name, Type: "bios-boot",
			GUID: p.GUID, Offset: p.Start, Size: p.Size})
	}
	return nil
}

// finish writes the block map, computes the image's and partitions' checksums and writes the
// manifest.
func (b *builder) finish(ctx context.Context, img string) error {
	b.phase(PhaseHash, "block map and checksums", 0)
	var m *bmap.Map
	// The block map first (it reads only the written ranges): the hash then skips the rest, which
	// reads as zeros.
	if err := func() error {
		f, err := os.Open(img)
		if err != nil {
			return fmt.Errorf("block map: %w", err)
		}
		defer f.Close()
		// What the image writers wrote, not what the host filesystem reports: the same block map
		// (and mapped_bytes) on every OS.
		if m, err = bmap.FromExtents(f, BlockSize, b.written); err != nil {
			return err
		}
		data, err := m.Marshal()
		if err != nil {
			return err
		}
		return os.WriteFile(img+".bmap", data, 0o644)
	}(); err != nil {
		return err
	}
	ranges := make([][2]int64, len(b.manifest.Partitions))
	for i, p := range b.manifest.Partitions {
		ranges[i] = [2]int64{p.Offset, p.Size}
	}
	extents := make([][2]int64, len(m.Ranges))
	for i, r := range m.Ranges {
		off, n := m.Bounds(r)
		extents[i] = [2]int64{off, off + n}
	}
	memo := loadZeroMemo(b.opts.Cache)
	imageSHA, partSHAs, err := hashRanges(ctx, img, ranges, extents, memo, b.prog)
	if err != nil {
		return err
	}
	memo.save()
	b.manifest.Image.SHA256 = imageSHA
	b.manifest.Image.Mapped = m.MappedBytes()
	for i := range b.manifest.Partitions {
		b.manifest.Partitions[i].SHA256 = partSHAs[i]
	}

	b.phase(PhaseFinish, "writing the manifest", 0)
	data, err := b.manifest.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.st.path("manifest.json"), data, 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := writeSBOM(b.st.path(SBOMName(b.r.Name)), &b.manifest); err != nil {
		return err
	}
	b.mu.Lock()
	warnings := append([]string(nil), b.warnings...)
	b.mu.Unlock()
	b.res = &Result{Name: b.r.Name, Version: b.r.Version, ImageSHA256: imageSHA, ImageSize: b.manifest.Image.Size,
		MappedBytes: b.manifest.Image.Mapped, Warnings: warnings}
	return ctx.Err()
}
