package assembler

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/archive/archivetest"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/fstree"
)

// TestMergedUsr unpacks a package with files under /bin, /sbin, /lib and /lib64 into a merged-/usr
// tree: they land under /usr as dpkg writes them through the links, dpkg's file list keeps the
// package's paths, and the tree passes usr-is-merged's check (each directory links into /usr).
func TestMergedUsr(t *testing.T) {
	p := archivetest.P("tool", "1.0").WithDeb(t, []archivetest.File{
		{Path: "bin/"}, {Path: "bin/tool", Mode: 0o755, Data: "#!/bin/sh\n"},
		{Path: "bin/tool-link", Link: "tool"},
		{Path: "sbin/"}, {Path: "sbin/toold", Mode: 0o755, Data: "daemon"},
		{Path: "lib/"}, {Path: "lib/x86_64-linux-gnu/"}, {Path: "lib/x86_64-linux-gnu/libtool.so.1", Data: "lib"},
		{Path: "lib64/"}, {Path: "lib64/ld-tool.so.2", Link: "/lib/x86_64-linux-gnu/libtool.so.1"},
		{Path: "usr/"}, {Path: "usr/share/"}, {Path: "usr/share/tool/"}, {Path: "usr/share/tool/data", Data: "data"},
	}, nil)
	file := filepath.Join(t.TempDir(), "tool.deb")
	if err := os.WriteFile(file, p.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := deb.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	lp := archive.LockedPackage{Name: "tool", Version: "1.0", Arch: "amd64"}

	tr := fstree.New()
	if err := mergeUsr(tr); err != nil {
		t.Fatal(err)
	}
	var status bytes.Buffer
	if _, err := installPackage(tr, &status, pkg, lp, true); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		n := tr.Get(d)
		if n == nil || !n.IsSymlink() || n.Target != "usr/"+d {
			t.Errorf("/%s: %+v, want a link to usr/%s", d, n, d)
		}
		if n := tr.Get("usr/" + d); n == nil || !n.IsDir() {
			t.Errorf("/usr/%s is not a directory", d)
		}
	}
	for p, want := range map[string]string{"usr/bin/tool": "#!/bin/sh\n", "usr/sbin/toold": "daemon",
		"usr/lib/x86_64-linux-gnu/libtool.so.1": "lib", "usr/share/tool/data": "data"} {
		if n := tr.Get(p); n == nil || string(n.Data) != want {
			t.Errorf("/%s: %+v, want %q", p, n, want)
		}
	}
	if n := tr.Get("usr/bin/tool-link"); n == nil || n.Target != "tool" {
		t.Errorf("/usr/bin/tool-link: %+v", n)
	}
	if n := tr.Get("usr/lib64/ld-tool.so.2"); n == nil || n.Target != "/lib/x86_64-linux-gnu/libtool.so.1" {
		t.Errorf("/usr/lib64/ld-tool.so.2: %+v", n)
	}
	for _, p := range []string{"lib32", "libx32"} {
		if tr.Get(p) != nil {
			t.Errorf("/%s made though no package uses it", p)
		}
	}
	list := tr.Get(dpkgDir + "/info/tool.list")
	if list == nil {
		t.Fatal("no dpkg file list")
	}
	for _, p := range []string{"/bin/tool", "/sbin/toold", "/lib64/ld-tool.so.2", "/usr/share/tool/data"} {
		if !strings.Contains(string(list.Data), p+"\n") {
			t.Errorf("the file list lacks %s:\n%s", p, list.Data)
		}
	}

	// Without merged /usr (a package set without dpkg is only unpacked) the paths stay.
	plain := fstree.New()
	if _, err := installPackage(plain, &status, pkg, lp, false); err != nil {
		t.Fatal(err)
	}
	if n := plain.Get("bin/tool"); n == nil || !n.IsRegular() {
		t.Errorf("unmerged tree: /bin/tool is %+v", n)
	}
}
