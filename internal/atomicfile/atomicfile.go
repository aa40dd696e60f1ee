// Package atomicfile replaces files so that a reader (or a power cut) sees either the old content
// or the new, never a mix: write to a temporary file in the same directory, fsync it, rename it
// over the target, fsync the directory.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// File is a replacement under construction. Write to it, then Commit; Abort (safe to defer after
// Commit) removes it.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts a replacement of path with permissions perm.
func Create(path string, perm os.FileMode) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	return &File{File: tmp, path: path}, nil
}

// Commit makes the written bytes durable and puts them in place of the target.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("replace %s: already committed or aborted", f.path)
	}
	f.done = true
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
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

// SyncDir makes a rename or removal inside dir durable. Windows has no directory fsync; there it
// does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
