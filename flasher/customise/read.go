package customise

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// ReadFiles reads files (paths from the root, "/" separated) from the FAT12, FAT16 or FAT32 file system
// of size bytes at byte off of f, after the checks Apply makes, without writing. A file that is
// missing is absent from the result; one larger than max bytes is an error.
func ReadFiles(f *os.File, off, size int64, names []string, max int64) (out map[string][]byte, err error) {
	v, err := checkFAT(io.NewSectionReader(f, off, size), size)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the file system could not be read: %v", ErrUnsupportedFAT, r)
		}
	}()
	b := file.New(f, true)
	var open func(string) (io.ReadCloser, error)
	switch v.bits {
	case 12:
		fsys, err := fat12.Read(b, size, off, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnsupportedFAT, err)
		}
		open = func(p string) (io.ReadCloser, error) { return fsys.OpenFile(p, os.O_RDONLY) }
	case 16:
		fsys, err := fat16.Read(b, size, off, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnsupportedFAT, err)
		}
		open = func(p string) (io.ReadCloser, error) { return fsys.OpenFile(p, os.O_RDONLY) }
	default:
		fsys, err := fat32.Read(b, size, off, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnsupportedFAT, err)
		}
		open = func(p string) (io.ReadCloser, error) { return fsys.OpenFile(p, os.O_RDONLY) }
	}
	out = map[string][]byte{}
	for _, name := range names {
		r, err := open("/" + strings.TrimPrefix(name, "/"))
		if err != nil {
			continue // missing
		}
		data, err := io.ReadAll(io.LimitReader(r, max+1))
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if int64(len(data)) > max {
			return nil, fmt.Errorf("read %s: larger than %d MiB", name, max>>20)
		}
		out[name] = data
	}
	return out, nil
}
