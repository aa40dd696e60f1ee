// Command erofsdir writes an EROFS image of a directory with Kiln's writer, for bench scripts
// that compare it with mkfs.erofs and mksquashfs on the same tree: erofsdir DIR IMAGE.
package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnproject/kiln/assembler/erofs"
	"github.com/kilnproject/kiln/assembler/fstree"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: erofsdir DIR IMAGE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "erofsdir:", err)
		os.Exit(1)
	}
}

func run(dir, img string) error {
	start := time.Now()
	var files []erofs.File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			rel = ""
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		f := erofs.File{Path: filepath.ToSlash(rel), Mode: st.Mode()}
		f.UID, f.GID, _ = fstree.Owner(st)
		if st.Mode()&fs.ModeDevice != 0 {
			if f.Major, f.Minor, err = fstree.DeviceNumbers(st); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		switch {
		case st.Mode().IsRegular():
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
		case st.Mode()&fs.ModeSymlink != 0:
			if f.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return err
	}
	read := time.Since(start)
	out, err := os.Create(img)
	if err != nil {
		return err
	}
	defer out.Close()
	start = time.Now()
	res, err := erofs.Write(context.Background(), out, files, 1704067200)
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	fmt.Printf("read %.2fs write %.2fs size %d inodes %d\n", read.Seconds(), time.Since(start).Seconds(), res.Size, res.Inodes)
	return nil
}
