package assembler

import (
	"context"
	"errors"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/kmod"
	"github.com/kilnproject/kiln/internal/progress"
)

// initModules are the modules the image's init needs whatever the recipe asks for: it mounts the
// ESP and the data partition (FAT32, with the kernel's default code page 437 and I/O charset
// ascii). Built-in ones are skipped; a kernel that lacks them still builds (with a warning) but
// will not mount the partitions.
var initModules = []string{"vfat", "nls_cp437", "nls_ascii"}

// readKernel reads the kernel image and the closure of the recipe's modules (plus initModules)
// from a linux-image package, in one pass over its data when the module index is cached, or from
// the kernel cache when a build asked for the same package and modules before.
func (b *builder) readKernel(ctx context.Context, pkg *deb.Package, want []string) (kernelParts, error) {
	all := append(append([]string(nil), want...), initModules...)
	debSHA, err := pkg.SHA256()
	if err != nil {
		return kernelParts{}, err
	}
	cacheDir := kernelCacheDir(b.opts.Cache, debSHA, all)
	if kp, ok := loadKernelCache(cacheDir); ok {
		b.prog.Report(progress.Event{Phase: PhaseInputs, Message: "kernel " + kp.release + " from the cache"})
		b.log.WithField("dir", cacheDir).Debug("kernel and modules from the cache")
		return kp, nil
	}
	opts := kmod.Options{CacheDir: b.opts.Cache, Progress: b.prog}
	k, err := kmod.ReadPackage(ctx, pkg, all, opts)
	if errors.Is(err, kmod.ErrUnknownModule) {
		if k, err = kmod.ReadPackage(ctx, pkg, want, opts); err == nil {
			b.log.WithField("modules", initModules).Warn("the kernel lacks the FAT modules; the image will not mount its partitions")
		}
	}
	if err != nil {
		return kernelParts{}, err
	}
	kp := kernelParts{image: k.Image, release: k.Set.Release, load: k.Set.Load, dep: k.Set.ModulesDep()}
	origin := pkg.Name + " " + pkg.Version
	for _, m := range k.Set.Modules {
		kp.modules = append(kp.modules, initramfs.File{Path: m.Path, Mode: 0o644, Data: m.Data,
			Origin: origin + " /lib/modules/" + k.Set.Release + "/" + m.Path})
	}
	if err := saveKernelCache(cacheDir, kp); err != nil {
		b.log.WithError(err).Warn("could not cache the kernel; the next build reads the package again")
	}
	return kp, nil
}
