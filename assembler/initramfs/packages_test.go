package initramfs

import (
	"io/fs"
	"strings"
	"testing"
)

// TestMergedUsrPackages: a package tree with a merged /usr (bin → usr/bin) takes Kiln's files
// through the links, keeps the packages' dpkg over busybox's applet, gives users bash when a
// package installed it, and keeps the packages' system accounts after the recipe's.
func TestMergedUsrPackages(t *testing.T) {
	s := Spec{Busybox: busybox(t), Users: []User{{Name: "pi", UID: -1, SSHKeys: []string{"ssh-ed25519 AAAA pi"}}}, SourceDateEpoch: 1}
	s.Packages = []File{
		{Path: "bin", Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"},
		{Path: "sbin", Mode: fs.ModeSymlink | 0o777, Target: "usr/sbin"},
		{Path: "lib", Mode: fs.ModeSymlink | 0o777, Target: "usr/lib"},
		{Path: "usr/bin/bash", Mode: 0o755, Data: []byte("bash")},
		{Path: "usr/bin/dpkg", Mode: 0o755, Data: []byte("dpkg")},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/bash\nmosquitto:x:100:101::/var/lib/mosquitto:/usr/sbin/nologin\n")},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nmosquitto:x:101:\n")},
		{Path: "etc/shadow", Mode: 0o640, Data: []byte("root:*:1:0:99999:7:::\nmosquitto:!:1::::::\n")},
	}
	r, err := Build(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]File{}
	for _, f := range r.Files {
		files[f.Path] = f
	}
	if f := files["bin"]; f.Mode.Type() != fs.ModeSymlink || f.Target != "usr/bin" {
		t.Errorf("bin: %+v, want the packages' link to usr/bin", f)
	}
	if f := files["usr/bin/busybox"]; len(f.Data) == 0 {
		t.Error("busybox not placed through the bin link at usr/bin/busybox")
	}
	if f := files["usr/sbin/init"]; f.Mode.Type() != fs.ModeSymlink {
		t.Errorf("usr/sbin/init: %+v, want busybox's applet link", f)
	}
	if f := files["usr/bin/dpkg"]; string(f.Data) != "dpkg" {
		t.Errorf("usr/bin/dpkg: %+v, want the package's dpkg", f)
	}
	passwd := string(files["etc/passwd"].Data)
	if !strings.Contains(passwd, "pi:x:1000:1000:pi:/home/pi:/bin/bash\n") || !strings.Contains(passwd, "\nmosquitto:x:100:101:") ||
		strings.Count("\n"+passwd, "\nroot:") != 1 {
		t.Errorf("passwd:\n%s", passwd)
	}
	if g := string(files["etc/group"].Data); !strings.Contains(g, "\nmosquitto:x:101:\n") {
		t.Errorf("group:\n%s", g)
	}
	if sh := string(files["etc/shadow"].Data); !strings.Contains(sh, "\nmosquitto:!:") || files["etc/shadow"].Mode != 0o600 {
		t.Errorf("shadow (%v):\n%s", files["etc/shadow"].Mode, sh)
	}
	if sh := string(files["etc/shells"].Data); !strings.Contains(sh, "/bin/bash\n") {
		t.Errorf("shells:\n%s", sh)
	}
}
