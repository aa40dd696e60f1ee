package assembler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/kilnproject/kiln/assembler/erofs"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/ota"
)

// Package images on UEFI boards boot a real root filesystem: a read-only EROFS image in the GPT
// partition root-a (root-b is the other slot, for updates), named by content on the UKI's command
// line (kiln.root=<id>, the id also in the root's /etc/kiln/root-id). The UKI's initramfs holds
// only busybox, the kernel modules and the init that mounts the root (assets/init/boot-init).

// rootModules are the modules the initramfs loads to mount the root: its filesystem and the
// writable overlays over /etc, /var, /home and /root.
var rootModules = []string{"erofs", "overlay"}

// RootIDFile holds the root filesystem's id inside the root.
const RootIDFile = "/etc/kiln/root-id"

// minRootSize is the smallest root partition; the default is twice the root image rounded up to
// rootSizeStep, so an update may grow it.
const (
	minRootSize  = 256 << 20
	rootSizeStep = 64 << 20
)

// rootName is the root image's file name in the update bundle.
func rootName(r *recipe.Recipe) string { return r.Name + "-" + r.Version + ".root" }

// usesRoot reports whether the recipe's image boots a root filesystem on a partition: a package
// image on a UEFI board. Kiln Tiny, the Raspberry Pi and ISO outputs keep the root in the
// initramfs.
func usesRoot(r *recipe.Recipe) bool {
	return len(r.System.Packages) > 0 && r.Board.UEFI() && !r.Board.BIOS() && !isPi(r) && !r.Outputs.ISO
}

// rootImage is a built root filesystem.
type rootImage struct {
	data   []byte
	id     string
	sha256 string
}

// hashFiles returns the SHA-256 of every regular file's contents (hex; "" for other entries),
// hashed on all cores.
func hashFiles(ctx context.Context, files []initramfs.File) ([]string, error) {
	sums := make([]string, len(files))
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return nil
				}
				if i%256 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				if files[i].Mode.IsRegular() {
					sums[i] = sha256Hex(files[i].Data)
				}
			}
		})
	}
	return sums, g.Wait()
}

// rootID derives the root filesystem's id from its files: paths, types, modes, owners, device
// numbers, symlink targets and the contents' SHA-256 (sums, as hashFiles returns them).
func rootID(files []initramfs.File, sums []string) string {
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return files[idx[a]].Path < files[idx[b]].Path })
	h := sha256.New()
	for _, i := range idx {
		f := files[i]
		fmt.Fprintf(h, "%s\x00%d %d %d %d %d\x00%s\x00%s\n", f.Path, uint32(f.Mode), f.UID, f.GID, f.Major, f.Minor, f.Target, sums[i])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// buildRoot assembles the root filesystem of spec, adds its id and writes the EROFS image; it
// records the files in the manifest under "root:".
func (b *builder) buildRoot(ctx context.Context, spec initramfs.Spec) (*rootImage, error) {
	files, err := initramfs.Tree(ctx, spec)
	if err != nil {
		return nil, err
	}
	sums, err := hashFiles(ctx, files)
	if err != nil {
		return nil, err
	}
	id := rootID(files, sums)
	idFile := []byte(id + "\n")
	files = append(files, initramfs.File{Path: RootIDFile[1:], Mode: 0o644, Data: idFile, Origin: "kiln:root-id"})
	sums = append(sums, sha256Hex(idFile))
	img, cached := b.loadRoot(id)
	if !cached {
		ef := make([]erofs.File, len(files))
		for i, f := range files {
			ef[i] = erofs.File{Path: f.Path, Mode: f.Mode, Data: f.Data, Target: f.Target, Major: f.Major, Minor: f.Minor,
				UID: f.UID, GID: f.GID}
		}
		var buf bytes.Buffer
		h := sha256.New()
		if _, err := erofs.Write(ctx, io.MultiWriter(&buf, h), ef, b.opts.SourceDateEpoch); err != nil {
			return nil, fmt.Errorf("root filesystem: %w", err)
		}
		img = &rootImage{data: buf.Bytes(), id: id, sha256: hex.EncodeToString(h.Sum(nil))}
		b.saveRoot(img)
	}
	for i, f := range files {
		path := "root:/" + strings.TrimPrefix(f.Path, "/")
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			b.manifest.Files = append(b.manifest.Files, PlacedFile{Path: path, Mode: fmt.Sprintf("%04o", f.Mode.Perm()),
				Size: int64(len(f.Target)), Target: f.Target, Origin: f.Origin})
		case f.Mode.IsRegular():
			b.manifest.Files = append(b.manifest.Files, PlacedFile{Path: path, Mode: fmt.Sprintf("%04o", f.Mode.Perm()),
				Size: int64(len(f.Data)), SHA256: sums[i], Origin: f.Origin})
		}
	}
	b.manifest.Root = &RootInfo{File: rootName(b.r), FS: "erofs", ID: id, Size: int64(len(img.data)), SHA256: img.sha256}
	b.log.WithFields(logrus.Fields{"id": id, "size": len(img.data), "cached": cached}).Debug("root filesystem built")
	return img, nil
}

// rootSize is the size of each root partition: board.root_size, or twice the image rounded up
// to 64 MiB and at least 256 MiB.
func rootSize(r *recipe.Recipe, img int64) (int64, error) {
	if s := int64(r.Board.RootSize); s > 0 {
		if s < img {
			return 0, fmt.Errorf("board.root_size: %v does not hold the root filesystem of %d MiB: make it at least %d MiB",
				r.Board.RootSize, img>>20, (img+(1<<20)-1)>>20)
		}
		return s, nil
	}
	s := (2*img + rootSizeStep - 1) / rootSizeStep * rootSizeStep
	return max(s, minRootSize), nil
}

// rootPartitions are the GPT names of the root slots.
var rootPartitions = [2]string{ota.RootSlotA, ota.RootSlotB}

// appendMissing appends the names of add that list lacks.
func appendMissing(list, add []string) []string {
	out := append([]string(nil), list...)
	for _, a := range add {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
