package recipe

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/board"
)

// The default recipe is the pc board's: naming it changes nothing but the name.
func TestPCBoardIsTheDefault(t *testing.T) {
	plain, err := Parse("kiln.toml", []byte(fiveLines))
	if err != nil {
		t.Fatal(err)
	}
	named, err := Parse("kiln.toml", []byte(fiveLines+"[board]\nname = \"pc\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if named.Board.Name != "pc" {
		t.Fatalf("board name %q", named.Board.Name)
	}
	named.Board.Name = ""
	named.lines, plain.lines = nil, nil
	if !reflect.DeepEqual(plain, named) {
		t.Errorf("[board] name = \"pc\" changes the recipe:\n%+v\n%+v", plain, named)
	}
}

func TestBoardSetsArchAndDefaults(t *testing.T) {
	r, err := Parse("kiln.toml", []byte(fiveLines+"[board]\nname = \"arm64-uefi\"\ndisk_size = \"1GiB\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := board.Builtin("arm64-uefi")
	if r.Arch != "aarch64" || r.DebianArch() != "arm64" || r.Kernel.Package != "linux-image-arm64" ||
		r.Kernel.Cmdline != b.Kernel.Cmdline || !reflect.DeepEqual(r.Kernel.Modules, b.Kernel.Modules) {
		t.Errorf("board defaults not applied: arch %s kernel %+v", r.Arch, r.Kernel)
	}
	if r.Board.DiskSize != GiB || r.Board.ESPSize != b.Layout.ESPSize {
		t.Errorf("recipe override or board layout lost: %+v", r.Board)
	}
	// Naming only the arch picks the arch's default board.
	r, err = Parse("kiln.toml", []byte(strings.Replace(fiveLines, "version", "arch = \"aarch64\"\nversion", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r.BoardRef() != "arm64-uefi" || r.Kernel.Package != "linux-image-arm64" {
		t.Errorf("arch aarch64: board %s kernel %s", r.BoardRef(), r.Kernel.Package)
	}
	// A round trip through Marshal keeps everything.
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("kiln.toml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if back.Arch != r.Arch || back.Kernel.Package != r.Kernel.Package {
		t.Errorf("round trip: %+v", back)
	}
}

func TestBoardFileByPath(t *testing.T) {
	dir := t.TempDir()
	b, _ := board.Builtin("arm64-uefi")
	src := "name = \"mybox\"\narch = \"aarch64\"\nfirmware = \"uefi\"\n[kernel]\npackage = \"linux-image-arm64\"\nconsole = \"ttyS2\"\n" +
		"modules = [\"dwmac_rk\"]\n[boot]\nbootloader = \"systemd-boot-efi\"\nboot_tries = 2\n[layout]\ndisk_size = \"2GiB\"\nesp_size = \"64MiB\"\n"
	if err := os.WriteFile(filepath.Join(dir, "mybox.toml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Parse(filepath.Join(dir, "kiln.toml"), []byte(fiveLines+"[board]\nname = \"mybox.toml\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Arch != "aarch64" || r.Board.DiskSize != 2*GiB || r.Board.BootTries != 2 || r.Kernel.Modules[0] != "dwmac_rk" {
		t.Errorf("board file not applied: %+v %+v", r.Board, r.Kernel)
	}
	lb, err := r.LoadBoard()
	if err != nil || lb.Kernel.Console != "ttyS2" || lb.Name == b.Name {
		t.Errorf("LoadBoard = %+v, %v", lb, err)
	}
}

func TestBoardErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("name = \"bad\"\narch = \"aarch64\"\nfirmware = \"uefi\"\n[kernel]\npackage = \"linux-image-amd64\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"unknown board", fiveLines + "[board]\nname = \"pi5\"\n",
			`kiln.toml:7: board.name: unknown board "pi5": built-in boards are arm64-uefi, pc, rpi`},
		{"arch contradicts board", strings.Replace(fiveLines, "version", "arch = \"x86_64\"\nversion", 1) + "[board]\nname = \"rpi\"\n",
			"kiln.toml:3: arch: arch x86_64 contradicts board rpi (aarch64); remove arch"},
		{"kernel for another arch", fiveLines + "[board]\nname = \"arm64-uefi\"\n[kernel]\npackage = \"linux-image-amd64\"\n",
			"kiln.toml:9: kernel.package: kernel linux-image-amd64 is built for amd64, the recipe builds for aarch64"},
		{"board file errors", fiveLines + "[board]\nname = \"bad.toml\"\n",
			"kiln.toml:7: board.name: " + bad + ": 5 problems:\n  " + bad + ":4: kernel.console: bad console"},
		{"missing board file", fiveLines + "[board]\nname = \"none.toml\"\n", "kiln.toml:7: board.name: load board"},
		{"bios on arm", fiveLines + "[board]\nname = \"arm64-uefi\"\nfirmware = \"bios\"\n",
			`kiln.toml:8: board.firmware: firmware "bios" needs arch x86_64, the recipe builds for aarch64`},
		{"iso on arm", fiveLines + "[board]\nname = \"arm64-uefi\"\n[outputs]\niso = true\n", "outputs.iso: ISO output needs arch x86_64"},
		{"unsupported arch", strings.Replace(fiveLines, "version", "arch = \"riscv64\"\nversion", 1), `arch: unsupported arch "riscv64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "kiln.toml"), []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant %q", err, tc.want)
			}
		})
	}
}
