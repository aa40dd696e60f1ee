// Package fat writes a FAT32 filesystem holding a given tree in one pass: every cluster is assigned
// before a byte is written, files and directories are allocated contiguously in tree order, and the
// volume is streamed to its place in an image with large sequential writes. Areas that hold no data
// (the unused FAT tail, free clusters) are never written, so a fresh sparse image stays sparse.
//
// The result is what fsck.fat, mtools, Linux's vfat driver and UEFI firmware expect: boot sector and
// backup, FSInfo with exact free count, two FATs, hidden sectors set to the partition's offset, '.'
// and '..' entries, VFAT long names with 8.3 aliases, a volume label, deterministic timestamps.
package fat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kilnproject/kiln/internal/progress"
)

// Errors a caller can branch on.
var (
	// ErrTooSmall: the volume is too small to be FAT32 (fewer than 65525 clusters).
	ErrTooSmall = errors.New("volume too small for FAT32")
	// ErrNoSpace: the files do not fit on the volume.
	ErrNoSpace = errors.New("files do not fit on the FAT volume")
)

// File is one file or directory to place on the volume.
type File struct {
	Path string // slash-separated, relative to the volume root, e.g. "EFI/BOOT/BOOTX64.EFI"
	Dir  bool
	Data []byte // contents of a regular file
}

// Options shape the volume.
type Options struct {
	// Label is the volume label (up to 11 characters, stored in upper case); "" for none.
	Label string
	// VolumeID is the volume serial number; derive it from a stable seed for reproducible images.
	VolumeID uint32
	// HiddenSectors is the volume's offset in 512-byte sectors from the start of the disk (the
	// partition's first LBA); 0 for a volume that is the whole medium.
	HiddenSectors uint32
	// ModTime stamps every file and directory (FAT keeps local time in 2-second steps from 1980 to
	// 2107; it is written as UTC). The zero time stands for 1980-01-01 00:00:00.
	ModTime time.Time
	// ClusterSize in bytes; 0 picks Microsoft's default for the volume size.
	ClusterSize int
}

// Info describes a written volume.
type Info struct {
	ClusterSize  int64
	Clusters     uint32 // data clusters on the volume
	UsedClusters uint32
	Files, Dirs  int   // regular files and directories, without the root
	DataBytes    int64 // bytes of file contents
}

// FreeBytes is the space left for files.
func (i *Info) FreeBytes() int64 { return int64(i.Clusters-i.UsedClusters) * i.ClusterSize }

// Write lays out a FAT32 volume of size bytes holding files and writes it to w at offset off. The
// region is expected to read as zeros (a new sparse file or a discarded device): free space is not
// written. Parent directories missing from files are created. Files are written in path order,
// whatever the order given. prog receives Phase "fat" events counting the volume's data bytes.
func Write(ctx context.Context, w io.WriterAt, off, size int64, files []File, opt Options, prog progress.Func) (*Info, error) {
	g, err := newGeometry(size, opt.ClusterSize)
	if err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	label, err := volumeLabel(opt.Label)
	if err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	root, info, err := buildTree(files)
	if err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	if err := nameTree(root, label != noLabel); err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	cb := g.clusterBytes()
	next := allocate(root, cb, 2)
	used := next - 2
	if used > g.clusters {
		return nil, fmt.Errorf("fat: %w: they need %d MiB with their directories, the volume holds %d MiB: make the partition larger",
			ErrNoSpace, (int64(used)*cb+1<<20-1)>>20, (int64(g.clusters)*cb)>>20)
	}
	info.ClusterSize, info.Clusters, info.UsedClusters = cb, g.clusters, used

	ts := dosStamp(opt.ModTime)
	vw := &volumeWriter{ctx: ctx, w: w, base: off, prog: prog, total: int64(used) * cb}
	if err := vw.writeReserved(g, label, opt, next); err != nil {
		return nil, err
	}
	if err := vw.writeFATs(g, root, next); err != nil {
		return nil, err
	}
	if err := vw.seek(g.dataStart()); err != nil {
		return nil, err
	}
	if err := vw.writeData(root, label, ts, cb); err != nil {
		return nil, err
	}
	if err := vw.flush(); err != nil {
		return nil, err
	}
	prog.Report(progress.Event{Phase: "fat", Done: vw.total, Total: vw.total})
	return info, nil
}

// node is a file or directory in the volume being laid out.
type node struct {
	name     string
	dir      bool
	data     []byte
	children []*node
	names    []nameEntry // the children's directory names, in children order
	cluster  uint32      // first cluster, 0 for an empty file
	nclust   uint32
	entries  int // 32-byte entries of a directory
}

func buildTree(files []File) (*node, *Info, error) {
	root := &node{dir: true}
	info := &Info{}
	byPath := map[string]*node{"": root}
	folded := map[string]string{} // case-folded path -> path, to catch names that differ only in case
	add := func(parent *node, p string, n *node) error {
		if err := checkLongName(n.name); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if prev, ok := folded[foldName(p)]; ok {
			return fmt.Errorf("%s and %s differ only in case, which FAT cannot tell apart: rename one", prev, p)
		}
		folded[foldName(p)] = p
		byPath[p] = n
		parent.children = append(parent.children, n)
		return nil
	}
	var mkdir func(p string) (*node, error)
	mkdir = func(p string) (*node, error) {
		if n, ok := byPath[p]; ok {
			if !n.dir {
				return nil, fmt.Errorf("%s is a file, yet other entries lie below it", p)
			}
			return n, nil
		}
		parent, err := mkdir(parentDir(p))
		if err != nil {
			return nil, err
		}
		d := &node{name: path.Base(p), dir: true}
		if err := add(parent, p, d); err != nil {
			return nil, err
		}
		info.Dirs++
		return d, nil
	}
	for _, f := range files {
		p := strings.Trim(f.Path, "/")
		if p == "" || p == "." {
			if f.Dir {
				continue // the root itself
			}
			return nil, nil, fmt.Errorf("a file has an empty path")
		}
		if p != path.Clean(p) || p == ".." || strings.HasPrefix(p, "../") {
			return nil, nil, fmt.Errorf("%s: not a clean relative path", f.Path)
		}
		if f.Dir {
			if _, err := mkdir(p); err != nil {
				return nil, nil, err
			}
			continue
		}
		if _, ok := byPath[p]; ok {
			return nil, nil, fmt.Errorf("%s: listed twice", p)
		}
		if int64(len(f.Data)) > 0xFFFFFFFF {
			return nil, nil, fmt.Errorf("%s: %d bytes is above FAT32's 4 GiB file size limit", p, len(f.Data))
		}
		parent, err := mkdir(parentDir(p))
		if err != nil {
			return nil, nil, err
		}
		if err := add(parent, p, &node{name: path.Base(p), data: f.Data}); err != nil {
			return nil, nil, err
		}
		info.Files++
		info.DataBytes += int64(len(f.Data))
	}
	return root, info, nil
}

func parentDir(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// nameTree sorts every directory, gives its children their directory names and counts its entries.
func nameTree(d *node, hasLabel bool) error {
	slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	names := make([]string, len(d.children))
	for i, c := range d.children {
		names[i] = c.name
	}
	var err error
	if d.names, err = assignNames(names); err != nil {
		return err
	}
	switch {
	case !isRoot(d):
		d.entries = 2 // '.' and '..'
	case hasLabel:
		d.entries = 1 // the root has no dot entries, but may have a label entry
	default:
		d.entries = 0
	}
	for i, c := range d.children {
		d.entries += d.names[i].slots()
		if c.dir {
			if err := nameTree(c, false); err != nil {
				return err
			}
		}
	}
	// A FAT directory holds at most 65536 entries (2 MiB).
	if d.entries > 65536 {
		return fmt.Errorf("%s: %d directory entries, FAT allows 65536: spread the files over subdirectories", displayName(d), d.entries)
	}
	return nil
}

// isRoot is only true for the tree's root, the one directory without a name.
func isRoot(d *node) bool { return d.name == "" }

func displayName(d *node) string {
	if isRoot(d) {
		return "/"
	}
	return d.name
}

// allocate assigns clusters to d and everything below it in depth-first tree order, starting at
// cluster next, and returns the first cluster after them. The writer visits in the same order, so
// the data area is written front to back.
func allocate(d *node, cb int64, next uint32) uint32 {
	if isRoot(d) {
		d.nclust = uint32(max(1, (int64(d.entries)*32+cb-1)/cb))
		d.cluster, next = next, next+d.nclust
	}
	for _, c := range d.children {
		if c.dir {
			c.nclust = uint32(max(1, (int64(c.entries)*32+cb-1)/cb))
		} else {
			c.nclust = uint32((int64(len(c.data)) + cb - 1) / cb)
		}
		if c.nclust > 0 {
			c.cluster, next = next, next+c.nclust
		}
		if c.dir {
			next = allocate(c, cb, next)
		}
	}
	return next
}
