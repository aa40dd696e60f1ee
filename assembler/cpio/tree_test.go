package cpio

import (
	"bytes"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/fstree"
)

func TestWriteTree(t *testing.T) {
	tr := fstree.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddFile("usr/bin/tool", []byte("#!/bin/sh\n"), 0o755, "test"))
	must(tr.AddSymlink("bin", "usr/bin", "test"))
	must(tr.AddDir("etc/ssh", 0o700, "test"))
	must(tr.AddDevice("dev/console", fs.ModeDevice|fs.ModeCharDevice|0o600, 5, 1, "test"))
	var a, b bytes.Buffer
	if _, err := WriteTree(&a, tr, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTree(&b, tr, 42); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two archives of the same tree differ")
	}
	got := parse(t, a.Bytes())
	var names []string
	for _, p := range got {
		names = append(names, p.name)
		if p.name == "usr" && p.nlink != 3 {
			t.Errorf("usr: nlink %d, want 3", p.nlink)
		}
	}
	want := "bin dev dev/console etc etc/ssh usr usr/bin usr/bin/tool TRAILER!!!"
	if strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
	cpio := needTool(t, "cpio")
	cmd := exec.Command(cpio, "-tv", "--quiet")
	cmd.Stdin = bytes.NewReader(a.Bytes())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	if !strings.Contains(string(out), "bin -> usr/bin") || !strings.Contains(string(out), "drwx------") {
		t.Errorf("cpio -tv:\n%s", out)
	}
}
