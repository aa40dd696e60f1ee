// Command diskimage writes the default Kiln disk layout (512 MiB: 192 MiB ESP, the rest a FAT32 data
// partition) with a directory's files on the data partition, for bench/disk.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnproject/kiln/assembler/disk"
	"github.com/kilnproject/kiln/assembler/fat"
)

func main() {
	src := flag.String("src", "", "directory whose files go onto the data partition")
	out := flag.String("out", "", "image to write")
	size := flag.Int64("size", 512<<20, "disk size in bytes")
	esp := flag.Int64("esp", 192<<20, "ESP size in bytes")
	gen := flag.Int("gen", 0, "instead: fill -src with this many files of 4 KiB, 100 per directory")
	flag.Parse()
	var err error
	if *gen > 0 {
		err = generate(*src, *gen)
	} else {
		err = run(*src, *out, *size, *esp)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskimage:", err)
		os.Exit(1)
	}
}

func generate(dir string, n int) error {
	r := rand.New(rand.NewPCG(uint64(n), 4096))
	buf := make([]byte, 4096)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("dir%03d", i/100))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for j := range buf {
			buf[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file-%05d.bin", i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func run(src, out string, size, esp int64) error {
	start := time.Now()
	var files []fat.File
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		f := fat.File{Path: filepath.ToSlash(rel), Dir: d.IsDir()}
		if !f.Dir {
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
			n++
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return err
	}
	read := time.Since(start)
	res, err := disk.Write(context.Background(), out, disk.Layout{
		Size:     size,
		DiskGUID: "11111111-2222-4333-8444-555555555555",
		ModTime:  time.Unix(1700000000, 0),
		Partitions: []disk.Partition{
			{Name: "ESP", Type: disk.TypeESP, Size: esp, Label: "ESP", GUID: "21111111-2222-4333-8444-555555555555", FS: disk.FSFAT32},
			{Name: "data", Type: disk.TypeData, Label: "KILN-DATA", GUID: "31111111-2222-4333-8444-555555555555", FS: disk.FSFAT32, Files: files},
		},
	}, nil)
	if err != nil {
		return err
	}
	total := time.Since(start)
	fmt.Printf("files=%d read_s=%.3f total_s=%.3f files_per_s=%.0f data_offset=%d\n",
		n, read.Seconds(), total.Seconds(), float64(n)/total.Seconds(), res.Partitions[1].Start)
	return nil
}
