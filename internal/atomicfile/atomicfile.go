// Package atomicfile replaces files so that a reader (or a power cut) sees either the old content
// or the new, never a mix: write to a temporary file in the same directory, fsync it, rename it
// over the target, fsync the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// File is a replacement under construction. Write to it, then Commit; Abort (safe to defer after
// Commit) removes it.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts a replacement of path with permissions perm (less the umask, as os.WriteFile;
// no chmod, which FAT file systems refuse).
func Create(path string, perm os.FileMode) (*File, error) {
	for range 100 {
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.FormatUint(rand.Uint64(), 36)+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("replace %s: %w", path, err)
		}
		return &File{File: f, path: path}, nil
	}
	return nil, fmt.Errorf("replace %s: no free temporary name", path)
}

// Commit makes the written bytes durable and puts them in place of the target.
func (f *File) Commit() error { return f.commit(os.Rename) }

// CommitAs is Commit under a name chosen after writing (a content-addressed file), in the
// directory Create was given.
func (f *File) CommitAs(name string) error {
	f.path = filepath.Join(filepath.Dir(f.path), name)
	return f.Commit()
}

// CommitNew is Commit for a target that must not exist yet: it fails with an error wrapping
// fs.ErrExist, leaving the existing file alone, where Commit would replace it.
func (f *File) CommitNew() error {
	return f.commit(func(tmp, path string) error {
		err := os.Link(tmp, path)
		os.Remove(tmp)
		return err
	})
}

func (f *File) commit(place func(tmp, path string) error) error {
	if f.done {
		return fmt.Errorf("replace %s: already committed or aborted", f.path)
	}
	f.done = true
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("replace %s: %w", f.path, err)
	}
	if err := SyncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("replace %s: %w", f.path, err)
	}
	return nil
}

// Abort drops the replacement and leaves the target as it was. It does nothing after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// Write replaces path with data.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.File.Write(data); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return f.Commit()
}

// WriteFrom replaces path with everything r yields.
func WriteFrom(path string, r io.Reader, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.Copy(f.File, r); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return f.Commit()
}

// SyncDir makes a rename or removal inside dir durable. Windows has no directory fsync, and
// some file systems refuse one with a permission error; there it does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return nil
}
