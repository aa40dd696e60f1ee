package assembler

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/dpkgconf"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/internal/progress"
)

// PackageInfo is one Debian package installed into the image.
type PackageInfo struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Arch     string   `json:"arch"`
	Source   string   `json:"source,omitempty"` // the source package, when it differs from the name
	Origin   string   `json:"origin"`           // "<suite>/<component>"
	Filename string   `json:"filename"`         // path in the archive
	Size     int64    `json:"size"`
	SHA256   string   `json:"sha256"`
	Licenses []string `json:"licenses"` // DEP-5 License: names of /usr/share/doc/<name>/copyright, else ["unknown"]
}

// dpkgDir is dpkg's database in the image.
const dpkgDir = "var/lib/dpkg"

// controlMembers are the control.tar members kept in /var/lib/dpkg/info, as dpkg does; the
// maintainer scripts among them are not run at build time.
var controlMembers = map[string]bool{"preinst": true, "postinst": true, "prerm": true, "postrm": true,
	"config": true, "templates": true, "conffiles": true, "triggers": true, "shlibs": true, "symbols": true, "md5sums": true}

// readPackages unpacks the locked packages (not the build's own inputs) into the file set of the
// root filesystem and writes dpkg's database for them (/var/lib/dpkg/status, info/<pkg>.list,
// .md5sums and the maintainer scripts), so the system's dpkg lists them. The files go where the
// image keeps its root filesystem: today the initramfs (inputs.packages).
func (b *builder) readPackages(ctx context.Context) error {
	if b.store == nil {
		return nil
	}
	var list []archive.LockedPackage
	for _, p := range b.store.lock.Packages {
		if !p.Input {
			list = append(list, p)
		}
	}
	if len(list) == 0 {
		return nil
	}
	// The maintainer scripts run when the set has dpkg to run them with (the Essential base the
	// resolver adds); a set without (a bare test archive) is unpacked and marked installed as is.
	configure := slices.ContainsFunc(list, func(p archive.LockedPackage) bool { return p.Name == "dpkg" })
	if !configure {
		b.warn("the packages have no dpkg among them (the archive lacks Debian's Essential packages): their maintainer scripts are not run")
	}
	key := configuredKey(list, b.opts.SourceDateEpoch)
	var t *fstree.Tree
	var infos []PackageInfo
	err := errNotCached
	if configure {
		t, infos, err = b.loadConfigured(key)
	}
	if err != nil {
		if t, infos, err = b.unpack(ctx, list, configure); err != nil {
			return err
		}
		if configure {
			b.saveConfigured(key, t, infos)
		}
	}
	b.manifest.Packages = append(b.manifest.Packages, infos...)
	if configure {
		b.packageServices(t)
		if err := b.cloudInit(t); err != nil {
			return err
		}
	}
	for _, n := range t.Sorted() {
		if n.Path == "" {
			continue
		}
		b.inputs.packages = append(b.inputs.packages, initramfs.File{Path: n.Path, Mode: n.Mode, Data: n.Data, Target: n.Target,
			Major: n.Major, Minor: n.Minor, UID: uint32(n.UID), GID: uint32(n.GID), Origin: n.Origin})
	}
	b.log.WithField("packages", len(list)).Debug("packages unpacked")
	return nil
}

// unpack unpacks the packages into a new tree with dpkg's database and, when configure is set,
// runs their maintainer scripts.
func (b *builder) unpack(ctx context.Context, list []archive.LockedPackage, configure bool) (*fstree.Tree, []PackageInfo, error) {
	if configure { // say what the host lacks before unpacking
		if err := dpkgconf.Check(); err != nil {
			return nil, nil, fmt.Errorf("configure packages: %w", err)
		}
	}
	layout := b.r.Board.Layout()
	t := fstree.New()
	t.Replace = true // dpkg lets a package replace another's file when it says so (Replaces)
	t.Limits = fstree.Limits{File: layout.DiskSize, Total: layout.DiskSize, Entries: maxEntries}
	var infos []PackageInfo
	var status bytes.Buffer
	var unpacked []dpkgconf.Package
	if configure {
		if err := mergeUsr(t); err != nil {
			return nil, nil, err
		}
	}
	for i, lp := range list {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		b.prog.Report(progress.Event{Phase: PhaseInputs, Done: int64(i), Total: int64(len(list)), Message: "unpacking " + lp.Name + " " + lp.Version})
		pkg, err := b.store.open(lp)
		if err != nil {
			return nil, nil, fmt.Errorf("package %s: %w", lp.Name, err)
		}
		info, err := installPackage(t, &status, pkg, lp, configure)
		if err != nil {
			return nil, nil, fmt.Errorf("package %s %s: %w", lp.Name, lp.Version, err)
		}
		unpacked = append(unpacked, dpkgconf.Package{Name: lp.Name, Arch: lp.Arch,
			PreDepends: pkg.Control["Pre-Depends"], Depends: pkg.Control["Depends"]})
		infos = append(infos, info)
	}
	for _, d := range []string{dpkgDir + "/updates", dpkgDir + "/triggers"} {
		if err := t.AddDir(d, 0o755, "kiln:dpkg"); err != nil {
			return nil, nil, err
		}
	}
	if err := t.AddFile(dpkgDir+"/status", status.Bytes(), 0o644, "kiln:dpkg"); err != nil {
		return nil, nil, err
	}
	if err := t.AddFile(dpkgDir+"/available", nil, 0o644, "kiln:dpkg"); err != nil {
		return nil, nil, err
	}
	if configure {
		var err error
		if t, err = b.configurePackages(ctx, t, unpacked); err != nil {
			return nil, nil, err
		}
	}
	return t, infos, nil
}

// mergedDirs are the top-level directories that are links into /usr on a merged-/usr system:
// bin, sbin and lib always, lib32, lib64, libx32 and libo32 as packages of the architecture use
// them (as debootstrap links them).
var mergedDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"}

// MergedUsrPackage stands for merged /usr in a package set: package images are built merged, so
// the resolver prefers it to usrmerge.
const MergedUsrPackage = "usr-is-merged"

// mergeUsr makes t a merged-/usr tree before packages are unpacked into it, as debootstrap does:
// /bin, /sbin and /lib are links to their /usr directories. The Essential init-system-helpers
// then takes usr-is-merged (which checks just that) rather than usrmerge, which converts a tree
// with perl.
func mergeUsr(t *fstree.Tree) error {
	for _, d := range mergedDirs[:3] {
		if err := t.AddDir("usr/"+d, 0o755, "kiln:merged-usr"); err != nil {
			return err
		}
		if err := t.AddSymlink(d, "usr/"+d, "kiln:merged-usr"); err != nil {
			return err
		}
	}
	return nil
}

// usrPath returns the path mapping of packages unpacked into t: on a merged-/usr tree a
// package's /bin/ls lands in /usr/bin/ls, as dpkg writes it through the link (dpkg's file list
// still says /bin/ls); /lib64 and the like are linked on first use. Nil when t is not merged.
func usrPath(t *fstree.Tree) func(string) string {
	if n := t.Get("bin"); n == nil || !n.IsSymlink() {
		return nil
	}
	return func(p string) string {
		top, _, _ := strings.Cut(p, "/")
		if !slices.Contains(mergedDirs, top) {
			return p
		}
		if t.Get(top) == nil {
			if t.AddDir("usr/"+top, 0o755, "kiln:merged-usr") != nil || t.AddSymlink(top, "usr/"+top, "kiln:merged-usr") != nil {
				return p
			}
		}
		if n := t.Get(top); n == nil || !n.IsSymlink() {
			return p
		}
		return "usr/" + p
	}
}

// installPackage adds one package's files and its dpkg database entries to t and its status
// paragraph to status.
func installPackage(t *fstree.Tree, status *bytes.Buffer, pkg *deb.Package, lp archive.LockedPackage, unpacked bool) (PackageInfo, error) {
	info := PackageInfo{Name: lp.Name, Version: lp.Version, Arch: lp.Arch, Origin: lp.Suite + "/" + lp.Component,
		Filename: lp.Filename, Size: lp.Size, SHA256: lp.SHA256}
	if src, _, _ := strings.Cut(pkg.Control["Source"], " "); src != "" && src != lp.Name {
		info.Source = src
	}
	listing := []string{"/."}
	err := t.AddDeb(pkg, func(p string) bool {
		listing = append(listing, "/"+p)
		return true
	}, usrPath(t))
	if err != nil {
		return info, err
	}
	info.Licenses = []string{"unknown"}
	if c := copyrightOf(t, lp.Name); c != nil {
		if l := Licenses(c); len(l) > 0 {
			info.Licenses = l
		}
	}

	infoName := lp.Name
	if pkg.Control["Multi-Arch"] == "same" {
		infoName += ":" + lp.Arch
	}
	infoPath := func(what string) string { return dpkgDir + "/info/" + infoName + "." + what }
	origin := lp.Name + " " + lp.Version + " control"
	var control []byte
	err = pkg.WalkControl(func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if h.Name != "control" && !controlMembers[h.Name] {
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(r, 16<<20+1))
		if err != nil {
			return err
		}
		if len(data) > 16<<20 {
			return fmt.Errorf("control member %s: over 16 MiB", h.Name)
		}
		if h.Name == "control" {
			control = data
			return nil
		}
		mode := fs.FileMode(0o644)
		if fs.FileMode(h.Mode)&0o111 != 0 {
			mode = 0o755
		}
		return t.AddFile(infoPath(h.Name), data, mode, origin)
	})
	if err != nil {
		return info, err
	}
	if control == nil {
		return info, fmt.Errorf("no control file")
	}
	if err := t.AddFile(infoPath("list"), []byte(strings.Join(listing, "\n")+"\n"), 0o644, "kiln:dpkg"); err != nil {
		return info, err
	}
	state := "installed"
	if unpacked {
		state = "unpacked"
	}
	writeStatus(status, control, state)
	return info, nil
}

// writeStatus appends a package's status paragraph: its control file with "Status: install ok
// <state>" after the Package field, as dpkg writes it: "unpacked" before the packages are
// configured (dpkgconf makes it "installed").
func writeStatus(w *bytes.Buffer, control []byte, state string) {
	lines := strings.Split(strings.TrimRight(string(control), "\n"), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			lines = lines[:i] // the first paragraph only
			break
		}
	}
	done := false
	for _, l := range lines {
		w.WriteString(l + "\n")
		if !done && strings.HasPrefix(strings.ToLower(l), "package:") {
			w.WriteString("Status: install ok " + state + "\n")
			done = true
		}
	}
	w.WriteString("\n")
}

// copyrightOf returns /usr/share/doc/<name>/copyright from t, following a symlinked doc
// directory (libfoo-dev → libfoo) once.
func copyrightOf(t *fstree.Tree, name string) []byte {
	dir := "usr/share/doc/" + name
	if n := t.Get(dir); n != nil && n.IsSymlink() {
		target := n.Target
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(dir), target)
		}
		dir = strings.TrimPrefix(path.Clean(target), "/")
	}
	if n := t.Get(dir + "/copyright"); n != nil && n.IsRegular() {
		return n.Data
	}
	return nil
}

// Licenses returns the licence names of a machine-readable (DEP-5) debian/copyright file: the
// first line of every License field, in order of appearance, without repeats. A file that is not
// machine-readable gives none.
func Licenses(copyright []byte) []string {
	var out []string
	first := true
	dep5 := false
	// A syntax error ends the scan; what was read before it still describes the package.
	_ = archive.ParseDeb822(bytes.NewReader(copyright), archive.Limits{Field: 1 << 20, Paragraph: 4 << 20, Total: 16 << 20},
		func(p archive.Paragraph) error {
			if first {
				first = false
				f, _ := p.Get("Format")
				dep5 = strings.Contains(f, "copyright-format")
			}
			if !dep5 {
				return fs.SkipAll
			}
			l, ok := p.Get("License")
			if !ok {
				return nil
			}
			name, _, _ := strings.Cut(l, "\n")
			name = strings.TrimSpace(name)
			if name != "" && len(name) <= 200 && !contains(out, name) {
				out = append(out, name)
			}
			return nil
		})
	if !dep5 {
		return nil
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
