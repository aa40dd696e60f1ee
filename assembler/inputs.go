package assembler

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/grub"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/progress"
)

// inputs is everything read before the image is assembled.
type inputs struct {
	kernel  kernelParts
	busybox initramfs.File
	agent   initramfs.File

	stub             []byte // linux<efiArch>.efi.stub
	bootloader       []byte // systemd-boot<efiArch>.efi
	bootloaderOrigin string
	// Raspberry Pi (rpi.go): raspi-firmware's files and the kernel's Pi device trees.
	piFirmware, piDTBs map[string][]byte
	piOrigin           string
	grub               *grub.Files // GRUB's i386-pc files, for BIOS boot (needGRUB)

	users []initramfs.User
	extra []initramfs.File // recipe files and overlays for the root filesystem
	// packages are the installed packages' files and dpkg's database for the root filesystem.
	packages []initramfs.File
	// services are started by init besides the recipe's: the SSH server, the packages' units.
	services []initramfs.Service
	data     []fat.File // data partition contents

	mu       sync.Mutex
	recorded []Input
}

// kernelParts is what the image takes from the kernel package.
type kernelParts struct {
	image   []byte           // vmlinuz
	release string           // uname -r
	modules []initramfs.File // .ko files, paths relative to /lib/modules/<release>/
	load    []string         // modules init loads, in the recipe's order
	dep     []byte           // modules.dep of the modules
}

func (in *inputs) record(i Input) {
	in.mu.Lock()
	in.recorded = append(in.recorded, i)
	in.mu.Unlock()
}

// readInputs reads the packages, the agent and the recipe's files concurrently: the kernel package
// (by far the largest) is decompressed while everything else is read.
func (b *builder) readInputs(ctx context.Context) error {
	r, in := b.r, &b.inputs
	debs := DebsDir(b.opts.Cache, r.DebianArch())
	store, err := b.packageStore(ctx, debs)
	if err != nil {
		return err
	}
	b.store = store
	g, gctx := errgroup.WithContext(ctx)

	// Find all packages first (quick: their indexes and control files) so that every missing one
	// is reported at once.
	var errs []error
	open := func(role, field, ref string) *deb.Package {
		pkg, err := b.openPackage(g, debs, role, field, ref)
		errs = append(errs, err)
		return pkg
	}
	kernel := open("kernel", "kernel.package", r.Kernel.Package)
	busybox := open("busybox", "system.busybox", r.System.Busybox)
	bootRef := r.Board.Bootloader
	if bootRef == "" && isPi(r) {
		bootRef = piStubPackage // the Pi firmware boots the kernel; the UKI stub still makes the update bundle
	}
	boot := open("bootloader", "board.bootloader", bootRef)
	var grubPkg *deb.Package
	if needGRUB(r) {
		grubPkg = open("grub", "board.grub", r.Board.GRUB)
	}
	var piFW *deb.Package
	if isPi(r) {
		piFW = open("firmware", "board.firmware_package", b.board.Boot.FirmwarePackage)
	}
	if err := joinErrors(errs); err != nil {
		g.Wait()
		return err
	}
	if piFW != nil {
		g.Go(func() error { return b.readPiFirmware(gctx, piFW) })
		g.Go(func() error { return b.readPiDTBs(gctx, kernel) })
	}

	g.Go(func() error {
		pkg := kernel
		var err error
		want := kernelModules(r)
		if usesRoot(r) {
			want = appendMissing(want, rootModules)
		}
		in.kernel, err = b.readKernel(gctx, pkg, want)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", pkg.Name, err)
		}
		b.log.WithFields(map[string]any{"release": in.kernel.release, "modules": len(in.kernel.modules)}).Debug("kernel read")
		return nil
	})
	g.Go(func() error {
		var err error
		in.busybox, err = initramfs.BusyboxFromDeb(busybox)
		return err
	})
	g.Go(func() error {
		pkg := boot
		const dir = "usr/lib/systemd/boot/efi/"
		stub, loader := "linux"+efiArch(r)+".efi.stub", "systemd-boot"+efiArch(r)+".efi"
		err := pkg.Walk(func(h *tar.Header, rd io.Reader) error {
			if err := gctx.Err(); err != nil {
				return err
			}
			var dst *[]byte
			switch h.Name {
			case dir + stub:
				dst = &in.stub
			case dir + loader:
				dst = &in.bootloader
			default:
				return nil
			}
			data, err := io.ReadAll(rd)
			*dst = data
			return err
		})
		if err != nil {
			return err
		}
		if in.stub == nil || in.bootloader == nil {
			return fmt.Errorf("bootloader %s has no /%s%s and %s: name a systemd-boot-efi package for %s in board.bootloader",
				pkg, dir, stub, loader, r.DebianArch())
		}
		in.bootloaderOrigin = pkg.Name + " " + pkg.Version
		return nil
	})
	g.Go(func() error {
		path := AgentFor(b.opts.Agent, r.DebianArch())
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("kiln-agent for %s: %w (run `make build`, or set KILN_AGENT)", r.DebianArch(), err)
		}
		if err := checkELFArch(data, r.Arch); err != nil {
			return fmt.Errorf("kiln-agent %s: %w (run `make build`, which writes %s-%s beside it)",
				path, err, filepath.Base(b.opts.Agent), r.DebianArch())
		}
		in.agent = initramfs.File{Path: "usr/bin/kiln-agent", Mode: 0o755, Data: data, Origin: "kiln-agent"}
		// Named as in the image, not by the file it came from (kiln-agent, kiln-agent-amd64, …
		// depending on how Kiln was installed), so every install writes the same manifest.
		in.record(Input{Role: "agent", Path: "kiln-agent", Size: int64(len(data)), SHA256: sha256Hex(data)})
		return nil
	})
	if grubPkg != nil {
		g.Go(func() error { return b.readGRUB(gctx, grubPkg) })
	}
	g.Go(func() error { return b.readRecipeFiles(gctx) })
	g.Go(func() error { return b.readPackages(gctx) })
	g.Go(b.recordRecipe)
	if err := g.Wait(); err != nil {
		return err
	}
	// A stable order whatever finished first.
	sortInputs(in.recorded, map[string]int{"kernel": 0, "busybox": 1, "bootloader": 2, "agent": 3, "grub": 4, "firmware": 5})
	rec := in.recorded
	b.manifest.Inputs = rec
	return nil
}

// openPackage resolves a package reference of the recipe and records it as an input. The .deb's
// checksum is computed in g, in parallel with the caller reading the package.
func (b *builder) openPackage(g *errgroup.Group, debs, role, field, ref string) (*deb.Package, error) {
	written := ref
	if recipe.IsPackagePath(ref) {
		ref = b.r.Resolve(ref)
	}
	var pkg *deb.Package
	var err error
	if b.store != nil && !recipe.IsPackagePath(written) {
		pkg, err = deb.ResolveWith(b.store.find, ref)
	} else {
		pkg, err = deb.Resolve(debs, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", field, written, err)
	}
	b.prog.Report(progress.Event{Phase: PhaseInputs, Message: "reading " + pkg.Name + " " + pkg.Version})
	in := Input{Role: role, Package: pkg.Name, Version: pkg.Version, Via: pkg.Via, Path: filepath.Base(pkg.Path), Size: pkg.Size()}
	if b.store != nil && !recipe.IsPackagePath(written) {
		in.Path = debFileName(pkg)
	}
	if recipe.IsPackagePath(written) {
		in.Path = written
	}
	g.Go(func() error {
		sum, err := pkg.SHA256()
		if err != nil {
			return err
		}
		in.SHA256 = sum
		b.inputs.record(in)
		return nil
	})
	return pkg, nil
}

// debFileName is the name apt-get download gives a package's file.
func debFileName(p *deb.Package) string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// joinErrors joins the non-nil errors on one line ("a; b"), wrapping each.
func joinErrors(errs []error) error {
	var format []string
	var args []any
	for _, e := range errs {
		if e != nil {
			format = append(format, "%w")
			args = append(args, e)
		}
	}
	if len(args) == 0 {
		return nil
	}
	return fmt.Errorf(strings.Join(format, "; "), args...)
}
