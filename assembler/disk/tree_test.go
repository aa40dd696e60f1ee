package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/fstree"
)

func TestFromTree(t *testing.T) {
	tr := fstree.New()
	if err := tr.AddFile("etc/hostname", []byte("kiln\n"), 0o644, "test"); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddDir("srv/www", 0o755, "test"); err != nil {
		t.Fatal(err)
	}
	files, err := FromTree(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := []fat.File{{Path: "etc", Dir: true}, {Path: "etc/hostname", Data: []byte("kiln\n")},
		{Path: "srv", Dir: true}, {Path: "srv/www", Dir: true}}
	if len(files) != len(want) {
		t.Fatalf("FromTree: %+v", files)
	}
	for i := range want {
		if files[i].Path != want[i].Path || files[i].Dir != want[i].Dir || string(files[i].Data) != string(want[i].Data) {
			t.Errorf("entry %d: %+v, want %+v", i, files[i], want[i])
		}
	}
	l := testLayout(t)
	l.Partitions[1].Files = files
	img, res := writeImage(t, l)
	at := fmt.Sprintf("%s@@%d", img, res.Partitions[1].Start)
	if out := run(t, "mcopy", "-n", "-i", at, "::etc/hostname", "-"); out != "kiln\n" {
		t.Errorf("etc/hostname read back as %q", out)
	}
}

func TestFromTreeRefusesWhatFATCannotHold(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  func(*fstree.Tree) error
		msg  string
	}{
		{"symlink", func(tr *fstree.Tree) error { return tr.AddSymlink("bin/sh", "busybox", "busybox-static") },
			"bin/sh (from busybox-static): not supported by the filesystem: FAT32 cannot store a symbolic link"},
		{"device", func(tr *fstree.Tree) error {
			return tr.AddDevice("dev/console", fs.ModeDevice|fs.ModeCharDevice|0o600, 5, 1, "recipe")
		}, "dev/console (from recipe): not supported by the filesystem: FAT32 cannot store a character device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New()
			if err := tc.add(tr); err != nil {
				t.Fatal(err)
			}
			_, err := FromTree(tr)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}
