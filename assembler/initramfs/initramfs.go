// Package initramfs assembles the root filesystem of a Kiln image — busybox with its applet links,
// the init scripts, the kernel modules, kiln-agent and the first-boot settings of the recipe — and
// writes it as a compressed newc cpio archive for the kernel (or a UKI's .initrd section).
//
// The system boots with busybox init: /init is a link to busybox, /etc/inittab runs
// /etc/init.d/rcS once (pseudo filesystems, modules in the recipe's order, data partition and ESP,
// hostname, timezone, DHCP, the ready line on the serial console) and then keeps gettys on ttyS0
// and tty1 and the update agent running. Applet links are made at build time from the applet table
// in the busybox binary (see Applets), so the image is complete and listable before it boots and
// the manifest names every path.
//
// Build is deterministic: the same Spec gives the same bytes.
package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/assembler/cpio"
	"github.com/kilnproject/kiln/assets"
)

// Compression of the archive. The Debian 6.1 kernels support both (CONFIG_RD_ZSTD,
// CONFIG_RD_GZIP); zstd unpacks faster at boot and compresses better.
type Compression string

// Supported compressions.
const (
	Zstd Compression = "zstd" // default
	Gzip Compression = "gzip"
	None Compression = "none"
)

// Spec describes the root filesystem. Only Busybox is required; every other field has a sensible
// empty value.
type Spec struct {
	Name, Version string // image name and version: the ready line and /etc/issue
	Hostname      string // /etc/hostname; default "kiln"
	// Timezone is an IANA name ("Europe/Berlin", resolved with the host's zoneinfo, see TZ) or a
	// POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3"); default UTC.
	Timezone string

	Busybox File // the static busybox binary (from busybox-static), placed at /bin/busybox
	Agent   File // kiln-agent, placed at /usr/bin/kiln-agent; empty Data: none

	Kernel Modules // modules for /lib/modules/<release>/ and the ones init loads

	Users []User // login accounts; root is locked unless a user named "root" has a password hash
	// ConsoleShell puts a root shell on the serial console and tty1 instead of login prompts.
	ConsoleShell bool
	// Serial is the serial console's device ("ttyAMA0" on arm64); default ttyS0.
	Serial string
	WiFi   *WiFi // written to /etc/wpa_supplicant/wpa_supplicant.conf (0600); nil: none

	OSRelease   []byte // /etc/os-release
	Release     []byte // /etc/kiln/release.json
	TrustedRoot []byte // /etc/kiln/root.json (the OTA trust root); nil: none

	DataLabel string // FAT label of the data partition mounted at /data; default KILN-DATA
	ESPName   string // GPT name of the EFI system partition mounted at /boot/efi; default ESP
	DiskWait  int    // seconds init waits for the data partition; default 10

	// Services are started at boot and supervised by init.
	Services []Service

	// Packages are the files of installed Debian packages and dpkg's database. They go in after
	// the base directories and before everything Kiln writes, which wins over them (busybox's
	// applet links, the init scripts, the settings); directories merge.
	Packages []File

	// Extra holds the recipe's files and overlays. They are applied last and may replace any
	// generated file (a custom /etc/inittab, say); directories merge.
	Extra []File

	Compression     Compression // default Zstd
	SourceDateEpoch int64       // mtime of every entry
}

// File is one file system entry given to Build.
type File struct {
	Path         string      // path in the image, with or without a leading "/"
	Mode         fs.FileMode // type and permission bits; 0 means a regular file 0644
	Data         []byte      // regular file contents
	Target       string      // symlink target
	Major, Minor uint32      // device numbers
	UID, GID     uint32
	Origin       string // where it came from, for the manifest ("busybox-static 1:1.35.0-4", "recipe:files[2]")
}

// Modules are the kernel modules placed in the image.
type Modules struct {
	Release string // kernel release (uname -r), e.g. "6.1.0-56-amd64"
	// Files are the .ko files with Path relative to /lib/modules/<release>/ ("kernel/fs/fat/vfat.ko").
	Files []File
	// Dep is modules.dep for these files. Nil: Build writes one from the modules' own dependency
	// lists (the "depends=" field of .modinfo), which needs uncompressed .ko files.
	Dep []byte
	// Load lists the modules init loads with modprobe, in order (names, "virtio_blk").
	Load []string
}

// User is a login account.
type User struct {
	Name         string
	UID          int      // -1: assigned (root 0, others from 1000 in order)
	PasswordHash string   // crypt(3) hash ($6$, $5$, $1$: what busybox login verifies); "": locked
	SSHKeys      []string // authorized_keys lines
}

// WiFi are credentials for one network. PSK is a secret: it is written only to the 0600 file.
type WiFi struct {
	SSID, PSK, Country string
}

// String never shows the PSK.
func (w WiFi) String() string {
	return fmt.Sprintf("{SSID:%q PSK:<redacted> Country:%q}", w.SSID, w.Country)
}

// Result is a built initramfs.
type Result struct {
	Data        []byte      // the compressed archive
	Compression Compression // how Data is compressed
	Files       []File      // every entry in archive order (parents first), for the manifest
	Size        int64       // uncompressed archive size
}

// Errors a caller can branch on.
var (
	ErrNoBusybox  = errors.New("no busybox binary given")
	ErrBadSetting = errors.New("invalid first-boot setting")
)

// Build assembles the root filesystem and writes the compressed archive.
func Build(ctx context.Context, s Spec) (*Result, error) {
	files, err := Tree(ctx, s)
	if err != nil {
		return nil, err
	}
	return archive(files, s)
}

// Tree assembles the root filesystem and returns its entries in archive order (parents first):
// what Build archives, for a root filesystem image instead.
func Tree(ctx context.Context, s Spec) ([]File, error) {
	return assemble(ctx, &s, addBase, addPackages, addBusybox, addInit, addServices, addSettings, addModules, addKiln, addExtra)
}

// BuildBoot writes the initramfs of an image whose root is a filesystem on a partition: busybox,
// the kernel modules (Spec.Kernel; the storage drivers, erofs and overlay among them) and an /init
// that mounts the root named by kiln.root= on the kernel command line and switches to it (see
// assets/init/boot-init). The other fields of Spec go into the root filesystem (Tree).
func BuildBoot(ctx context.Context, s Spec) (*Result, error) {
	if s.Compression == "" {
		s.Compression = Zstd
	}
	files, err := assemble(ctx, &s, addBase, addBusybox, addModules, addBootInit)
	if err != nil {
		return nil, err
	}
	return archive(files, s)
}

func assemble(ctx context.Context, s *Spec, steps ...func(*tree, *Spec) error) ([]File, error) {
	if len(s.Busybox.Data) == 0 {
		return nil, ErrNoBusybox
	}
	t := newTree()
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := step(t, s); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
	}
	return t.sorted(), nil
}

func archive(files []File, s Spec) (*Result, error) {
	if s.Compression == "" {
		s.Compression = Zstd
	}
	entries := make([]cpio.Entry, len(files))
	for i, f := range files {
		entries[i] = cpio.Entry{Name: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Data: f.Data,
			Linkname: f.Target, Major: f.Major, Minor: f.Minor}
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, s.Compression)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	n, err := cpio.WriteAll(w, entries, s.SourceDateEpoch)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("initramfs: compress: %w", err)
	}
	return &Result{Data: buf.Bytes(), Compression: s.Compression, Files: files, Size: n}, nil
}

// addBootInit makes /init the script that finds and mounts the root filesystem, with its
// settings in /etc/kiln/boot.conf.
func addBootInit(t *tree, s *Spec) error {
	b, err := fs.ReadFile(assets.Init, "init/boot-init")
	if err != nil {
		return fmt.Errorf("embedded init/boot-init: %w", err)
	}
	if err := t.file("init", 0o755, b, "kiln:assets/init/boot-init"); err != nil {
		return err
	}
	wait := s.DiskWait
	if wait <= 0 {
		wait = 10
	}
	conf := "# Written by kiln: settings for /init.\n" +
		"KILN_MODULES=" + shellQuote(strings.Join(s.Kernel.Load, " ")) + "\n" +
		"KILN_DISK_WAIT=" + shellQuote(fmt.Sprint(wait)) + "\n"
	return t.file("etc/kiln/boot.conf", 0o644, []byte(conf), "kiln")
}

// NewWriter returns a writer that compresses what is written to it onto w the way Build does;
// Close flushes it (and does not close w).
func NewWriter(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Zstd, "":
		// One encoder goroutine and a fixed window: deterministic output whatever the host, and
		// a window the kernel's unzstd accepts.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (use zstd, gzip or none)", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// tree is the file set being assembled: path → file, later additions replacing earlier ones.
type tree struct{ files map[string]*File }

func newTree() *tree { return &tree{files: map[string]*File{}} }

func cleanPath(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// add places f, creating missing parent directories (0755, root). A directory added over an
// existing directory only updates its mode and owner.
func (t *tree) add(f File) error {
	f.Path = t.resolveParents(cleanPath(f.Path))
	if f.Path == "" || f.Path == "." {
		return nil // the root exists already
	}
	if f.Mode.Type() == fs.ModeSymlink && f.Target == "" {
		return fmt.Errorf("%s: symlink without a target", f.Path)
	}
	for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
		p, ok := t.files[dir]
		if !ok {
			t.files[dir] = &File{Path: dir, Mode: fs.ModeDir | 0o755, Origin: "kiln"}
			continue
		}
		if !p.Mode.IsDir() {
			return fmt.Errorf("%s: parent %s is not a directory", f.Path, dir)
		}
	}
	if old, ok := t.files[f.Path]; ok && old.Mode.IsDir() && !f.Mode.IsDir() {
		return fmt.Errorf("%s: a directory is in the way", f.Path)
	}
	t.files[f.Path] = &f
	return nil
}

// resolveParents follows symlinked directories among p's parents, as the file would land when
// written through them (bin/ls → usr/bin/ls on a merged-/usr package tree).
func (t *tree) resolveParents(p string) string {
	for hops := 0; hops < 40; hops++ {
		moved := false
		for i := 0; i < len(p); i++ {
			if p[i] != '/' {
				continue
			}
			f, ok := t.files[p[:i]]
			if !ok || f.Mode.Type() != fs.ModeSymlink {
				continue
			}
			target := f.Target
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(p[:i]), target)
			}
			p = cleanPath(target + p[i:])
			moved = true
			break
		}
		if !moved {
			return p
		}
	}
	return p
}

func (t *tree) dir(p string, mode fs.FileMode) error {
	return t.add(File{Path: p, Mode: fs.ModeDir | mode, Origin: "kiln"})
}

func (t *tree) file(p string, mode fs.FileMode, data []byte, origin string) error {
	return t.add(File{Path: p, Mode: mode, Data: data, Origin: origin})
}

func (t *tree) link(p, target string) error {
	return t.add(File{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target, Origin: "kiln"})
}

// sorted returns the files in archive order: sorted by path components, so every directory
// comes right before its contents.
func (t *tree) sorted() []File {
	out := make([]File, 0, len(t.files))
	for _, f := range t.files {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.ReplaceAll(out[i].Path, "/", "\x00") < strings.ReplaceAll(out[j].Path, "/", "\x00")
	})
	return out
}

func addBase(t *tree, s *Spec) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "etc/init.d", "lib",
		"proc", "sys", "dev", "run", "mnt", "boot", "boot/efi", "data", "var", "var/log", "etc/kiln"} {
		if err := t.dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := t.dir("root", 0o700); err != nil {
		return err
	}
	if err := t.dir("tmp", fs.ModeSticky|0o777); err != nil {
		return err
	}
	if err := t.link("var/run", "../run"); err != nil {
		return err
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	for _, d := range []File{
		{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
	} {
		d.Origin = "kiln"
		if err := t.add(d); err != nil {
			return err
		}
	}
	return nil
}

func addBusybox(t *tree, s *Spec) error {
	apps, err := Applets(s.Busybox.Data)
	if err != nil {
		return err
	}
	origin := s.Busybox.Origin
	if origin == "" {
		origin = "busybox"
	}
	if err := t.file("bin/busybox", 0o755, s.Busybox.Data, origin); err != nil {
		return err
	}
	for _, a := range apps {
		p := path.Join(a.Dir, a.Name)
		if p == "bin/busybox" {
			continue
		}
		if packageWins[a.Name] {
			if f, ok := t.files[t.resolveParents(p)]; ok && !f.Mode.IsDir() {
				continue
			}
		}
		if err := t.link(p, relTo(path.Dir(p), "bin/busybox")); err != nil {
			return err
		}
	}
	return t.link("init", "bin/busybox")
}

// packageWins are busybox applets an installed package's program replaces: dpkg's own tools keep
// working on the database they wrote. Every other applet wins over a package's file (init,
// getty, login and the start-up scripts rely on busybox's).
var packageWins = map[string]bool{"dpkg": true, "dpkg-deb": true}

// relTo returns the relative path from directory dir to target (both relative to the root).
func relTo(dir, target string) string {
	if dir == "." || dir == "" {
		return target
	}
	return strings.Repeat("../", strings.Count(dir, "/")+1) + target
}

func addInit(t *tree, s *Spec) error {
	files := []struct {
		src, dst string
		mode     fs.FileMode
	}{
		{"init/inittab", "etc/inittab", 0o644},
		{"init/rcS", "etc/init.d/rcS", 0o755},
		{"init/rcK", "etc/init.d/rcK", 0o755},
		{"init/kiln-agent", "etc/init.d/kiln-agent", 0o755},
		{"init/udhcpc.script", "etc/udhcpc/default.script", 0o755},
		{"init/profile", "etc/profile", 0o644},
		{"init/acpi-power", "etc/acpi/PWRF/00000080", 0o755},
	}
	for _, f := range files {
		b, err := fs.ReadFile(assets.Init, f.src)
		if err != nil {
			return fmt.Errorf("embedded %s: %w", f.src, err)
		}
		if f.dst == "etc/inittab" && s.Serial != "" && s.Serial != "ttyS0" {
			b = bytes.ReplaceAll(b, []byte("ttyS0"), []byte(s.Serial))
		}
		if f.dst == "etc/inittab" && s.ConsoleShell {
			b = shellConsoles(b)
		}
		if err := t.file(f.dst, f.mode, b, "kiln:assets/"+f.src); err != nil {
			return err
		}
	}
	label, esp, wait := s.DataLabel, s.ESPName, s.DiskWait
	if label == "" {
		label = "KILN-DATA"
	}
	if esp == "" {
		esp = "ESP"
	}
	if wait <= 0 {
		wait = 10
	}
	var conf strings.Builder
	conf.WriteString("# Written by kiln: settings for /etc/init.d/rcS.\n")
	for _, kv := range [][2]string{
		{"KILN_NAME", s.Name}, {"KILN_VERSION", s.Version},
		{"KILN_MODULES", strings.Join(s.Kernel.Load, " ")},
		{"KILN_DATA_LABEL", label}, {"KILN_ESP_PARTNAME", esp}, {"KILN_DISK_WAIT", fmt.Sprint(wait)},
	} {
		fmt.Fprintf(&conf, "%s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return t.file("etc/kiln/boot.conf", 0o644, []byte(conf.String()), "kiln")
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func addKiln(t *tree, s *Spec) error {
	if len(s.Agent.Data) > 0 {
		origin := s.Agent.Origin
		if origin == "" {
			origin = "kiln-agent"
		}
		if err := t.file("usr/bin/kiln-agent", 0o755, s.Agent.Data, origin); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{"etc/os-release", s.OSRelease}, {"etc/kiln/release.json", s.Release}, {"etc/kiln/root.json", s.TrustedRoot}} {
		if f.data == nil {
			continue
		}
		if err := t.file(f.path, 0o644, f.data, "kiln"); err != nil {
			return err
		}
	}
	if s.OSRelease != nil {
		return t.link("usr/lib/os-release", "../../etc/os-release")
	}
	return nil
}

func addPackages(t *tree, s *Spec) error { return merge(t, s.Packages, "package") }

func addExtra(t *tree, s *Spec) error { return merge(t, s.Extra, "extra") }

// merge adds files over the tree: a file replaces what is at its path, a directory takes the
// place of one there (mode and owner) and keeps its contents.
func merge(t *tree, files []File, what string) error {
	for _, f := range files {
		if f.Mode == 0 {
			f.Mode = 0o644
		}
		if f.Origin == "" {
			f.Origin = what
		}
		if f.Mode.IsDir() {
			// Merge: keep what is there, take the overlay's mode and owner.
			if old, ok := t.files[t.resolveParents(cleanPath(f.Path))]; ok && old.Mode.IsDir() {
				old.Mode, old.UID, old.GID = f.Mode, f.UID, f.GID
				continue
			}
		}
		if p := cleanPath(f.Path); f.Mode.Type() == fs.ModeSymlink && t.emptyDir(p) {
			delete(t.files, p) // a base directory a package makes a link (merged /usr: bin → usr/bin)
		}
		if err := t.add(f); err != nil {
			return fmt.Errorf("%s file %s: %w", what, f.Path, err)
		}
	}
	return nil
}

// shellConsoles turns the inittab's getty lines into root login shells on the same terminals.
func shellConsoles(inittab []byte) []byte {
	lines := strings.Split(string(inittab), "\n")
	for i, l := range lines {
		if tty, rest, ok := strings.Cut(l, "::respawn:"); ok && strings.HasPrefix(rest, "/sbin/getty ") {
			lines[i] = tty + "::respawn:-/bin/sh"
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// emptyDir reports whether p is a directory with nothing in it.
func (t *tree) emptyDir(p string) bool {
	if f, ok := t.files[p]; !ok || !f.Mode.IsDir() {
		return false
	}
	for k := range t.files {
		if strings.HasPrefix(k, p+"/") {
			return false
		}
	}
	return true
}
