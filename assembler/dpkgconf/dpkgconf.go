// Package dpkgconf configures unpacked Debian packages at build time as dpkg does on a device:
// it writes the tree to a directory, runs every package's preinst ("install") in dependency order
// (Pre-Depends first) and then `dpkg --configure -a` inside a chroot of that directory (the
// image's own dpkg, shell, perl, adduser …), and reads the result back with the ownership and
// modes the scripts gave each file. Services are not started (policy-rc.d says no) and the SSH
// host keys the scripts generate are removed: a device makes its own on first boot.
//
// As root the chroot is a plain one. As an ordinary Linux user the scripts run in a user and mount
// namespace, as mmdebstrap's unshare mode does: kiln re-executes itself (ChildCommand) in new
// namespaces, newuidmap/newgidmap map in-image id 0 to the user and 1..65535 to the user's
// /etc/subuid and /etc/subgid range, and the child sets the owners, runs the scripts and streams
// the tree back as a tar archive whose owners are the in-image ids the kernel shows inside.
package dpkgconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/fstree"
)

// Package is one unpacked package: its name and dependency fields, for the preinst order.
type Package struct {
	Name       string
	Arch       string
	PreDepends string
	Depends    string
}

// Options configure Configure.
type Options struct {
	Dir             string // scratch directory for the tree (removed afterwards); must not exist
	Packages        []Package
	SourceDateEpoch int64
	Timeout         time.Duration // whole run; 0: 10 minutes
	Log             *logrus.Entry
}

// ErrUnsupported: this host cannot run the image's maintainer scripts.
var ErrUnsupported = errors.New("cannot run maintainer scripts on this host")

// ErrScript: a maintainer script failed.
var ErrScript = errors.New("maintainer script failed")

// generated are files the scripts write that must not be baked into the image: per-device
// secrets (host keys, made on first boot), logs of the build and caches that differ between runs
// (ldconfig's aux-cache).
var generated = []string{"etc/ssh/ssh_host_*", "etc/dropbear/dropbear_*_host_key", "var/log/dpkg.log",
	"var/log/alternatives.log", "var/cache/ldconfig/aux-cache", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/*-", "usr/sbin/policy-rc.d"}

// Configure runs the maintainer scripts of the packages unpacked in t (dpkg's status lists them as
// "install ok unpacked") and returns the configured tree.
func Configure(ctx context.Context, t *fstree.Tree, opts Options) (*fstree.Tree, error) {
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		opts.Log = logrus.NewEntry(l)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := os.Mkdir(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("configure packages: %w", err)
	}
	defer os.RemoveAll(opts.Dir)
	root := opts.Dir
	rootless := needUserns()
	var owns []ownEntry
	setOwner := func(p string, n *fstree.Node) error { return own(p, n, time.Unix(opts.SourceDateEpoch, 0)) }
	if rootless { // the child in the namespace sets owners, modes and times
		setOwner = func(p string, n *fstree.Node) error {
			owns = append(owns, ownEntry{Path: n.Path, UID: n.UID, GID: n.GID, Mode: uint32(n.Mode)})
			return nil
		}
	}
	if err := write(t, root, setOwner); err != nil {
		return nil, fmt.Errorf("configure packages: write the tree to %s: %w", root, err)
	}
	// No service starts at build time (invoke-rc.d and deb-systemd-invoke ask policy-rc.d).
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		return nil, err
	}
	shell := "/bin/sh"
	if _, err := os.Lstat(filepath.Join(root, "bin/sh")); err != nil {
		shell = "/bin/dash"
	}
	if _, err := os.Stat(filepath.Join(root, strings.TrimPrefix(shell, "/"))); err != nil {
		return nil, fmt.Errorf("configure packages: no shell in the image (%s): the lock lacks the Essential packages; run `kiln lock --update`", shell)
	}
	if err := checkRunnable(root, "/proc/sys/fs/binfmt_misc"); err != nil {
		return nil, fmt.Errorf("configure packages: %w", err)
	}
	var script strings.Builder
	script.WriteString("set -e\n[ -e /dev/null ] || { echo 'no /dev/null' >&2; exit 1; }\n")
	for _, p := range order(opts.Packages) {
		name := p.Name
		pre := "/var/lib/dpkg/info/" + name + ".preinst"
		if _, err := os.Stat(filepath.Join(root, pre)); err != nil {
			name += ":" + p.Arch
			pre = "/var/lib/dpkg/info/" + name + ".preinst"
			if _, err := os.Stat(filepath.Join(root, pre)); err != nil {
				continue
			}
		}
		fmt.Fprintf(&script, "echo 'preinst %s'\nDPKG_MAINTSCRIPT_PACKAGE=%s DPKG_MAINTSCRIPT_ARCH=%s DPKG_MAINTSCRIPT_NAME=preinst %s install\n",
			p.Name, p.Name, p.Arch, pre)
	}
	script.WriteString("dpkg --force-confdef --force-confold --configure -a\n")
	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true", "SOURCE_DATE_EPOCH=" + fmt.Sprint(opts.SourceDateEpoch),
		"DPKG_ROOT=", "DPKG_ADMINDIR=/var/lib/dpkg", "TERM=dumb"}
	start := time.Now()
	var out []byte
	var nt *fstree.Tree
	var err error
	if rootless {
		opts.Log.Debug("running the maintainer scripts in a user namespace")
		out, nt, err = runUserns(ctx, request{Root: root, Shell: shell, Script: script.String(), Env: env,
			Epoch: opts.SourceDateEpoch, Owns: owns}, t)
	} else {
		out, err = chroot(ctx, root, shell, script.String(), env)
	}
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			return nil, fmt.Errorf("configure packages: %w", err)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", ctx.Err(), opts.Timeout)
		}
		return nil, fmt.Errorf("configure packages: %w: %v\n%s", ErrScript, err, tail(out, 4000))
	}
	opts.Log.WithFields(logrus.Fields{"seconds": time.Since(start).Seconds()}).Debug("maintainer scripts run")
	if !rootless {
		if err := removeGenerated(root); err != nil {
			return nil, fmt.Errorf("configure packages: %w", err)
		}
		if nt, err = read(t, root); err != nil {
			return nil, fmt.Errorf("configure packages: read the configured tree back: %w", err)
		}
	}
	return nt, nil
}

// removeGenerated deletes the generated files under root.
func removeGenerated(root string) error {
	for _, g := range generated {
		m, _ := filepath.Glob(filepath.Join(root, g))
		for _, f := range m {
			if err := os.RemoveAll(f); err != nil {
				return err
			}
		}
	}
	return nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

// order sorts packages so that each comes after what it (pre-)depends on, Pre-Depends first;
// cycles are broken in name order.
func order(pkgs []Package) []Package {
	by := map[string]int{}
	for i, p := range pkgs {
		by[p.Name] = i
	}
	names := func(field string) []string {
		rels, err := archive.ParseRelations(field)
		if err != nil {
			return nil
		}
		var out []string
		for _, alt := range rels {
			for _, r := range alt {
				if _, ok := by[r.Name]; ok {
					out = append(out, r.Name)
					break
				}
			}
		}
		return out
	}
	sorted := make([]Package, len(pkgs))
	copy(sorted, pkgs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	state := map[string]int{} // 1 visiting, 2 done
	var out []Package
	var visit func(p Package)
	visit = func(p Package) {
		if state[p.Name] != 0 {
			return
		}
		state[p.Name] = 1
		for _, field := range []string{p.PreDepends, p.Depends} {
			for _, n := range names(field) {
				visit(pkgs[by[n]])
			}
		}
		state[p.Name] = 2
		out = append(out, p)
	}
	for _, p := range sorted {
		visit(p)
	}
	return out
}

// write materialises t under root; setOwner gives each entry its mode, owner and time.
func write(t *fstree.Tree, root string, setOwner func(p string, n *fstree.Node) error) error {
	var dirs []*fstree.Node
	err := t.Walk(func(n *fstree.Node) error {
		p := filepath.Join(root, filepath.FromSlash(n.Path))
		switch {
		case n.IsDir():
			if n.Path != "" {
				if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
			}
			dirs = append(dirs, n)
			return nil
		case n.IsSymlink():
			if err := os.Symlink(n.Target, p); err != nil {
				return err
			}
		case n.IsRegular():
			if err := os.WriteFile(p, n.Data, 0o600); err != nil {
				return err
			}
		default:
			return nil // device nodes are made by the image's init, not needed by the scripts
		}
		return setOwner(p, n)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children first: a read-only directory stays writable until its files are in
		n := dirs[i]
		if err := setOwner(filepath.Join(root, filepath.FromSlash(n.Path)), n); err != nil {
			return err
		}
	}
	return nil
}

// read builds the tree of root, taking owners from the files and origins from old where the path
// was there before ("dpkg:configure" for what the scripts made).
func read(old *fstree.Tree, root string) (*fstree.Tree, error) {
	t := newTree(old)
	err := walkRoot(root, func(rel, p string, fi fs.FileInfo) error {
		e := entry{rel: rel, mode: fi.Mode()}
		e.uid, e.gid = owner(fi)
		var err error
		switch {
		case e.mode.IsRegular():
			e.data, err = fstree.ReadFile(p, 1<<40)
		case e.mode&fs.ModeSymlink != 0:
			e.target, err = os.Readlink(p)
		}
		if err != nil {
			return err
		}
		return addEntry(t, old, e)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func newTree(old *fstree.Tree) *fstree.Tree {
	t := fstree.New()
	t.Replace, t.Limits, t.AllowDevices = old.Replace, old.Limits, true
	return t
}

// walkRoot calls fn for the entries of root that belong in the image: directories, regular files
// and symlinks, outside /dev, /proc, /run and /tmp (the image's init mounts those).
func walkRoot(root string, fn func(rel, p string, fi fs.FileInfo) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		if rel == "dev" || strings.HasPrefix(rel, "dev/") || rel == "proc" || rel == "run" || rel == "tmp" {
			if d.IsDir() && rel != "" {
				return fs.SkipDir
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if m := fi.Mode(); !m.IsDir() && !m.IsRegular() && m&fs.ModeSymlink == 0 {
			return nil // sockets, FIFOs, devices left by a script are not part of the image
		}
		return fn(rel, p, fi)
	})
}

// entry is one file of the configured tree.
type entry struct {
	rel      string
	mode     fs.FileMode
	uid, gid int
	data     []byte
	target   string
}

// addEntry adds e to t with its origin from old.
func addEntry(t, old *fstree.Tree, e entry) error {
	origin := "dpkg:configure"
	if o := old.Get(e.rel); o != nil {
		origin = o.Origin
	}
	perm := e.mode.Perm() | e.mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	var err error
	switch {
	case e.mode.IsDir():
		if e.rel != "" {
			err = t.AddDir(e.rel, perm, origin)
		}
	case e.mode.IsRegular():
		err = t.AddFile(e.rel, e.data, perm, origin)
	case e.mode&fs.ModeSymlink != 0:
		err = t.AddSymlink(e.rel, filepath.ToSlash(e.target), origin)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if n := t.Get(e.rel); n != nil {
		n.UID, n.GID = e.uid, e.gid
	}
	return nil
}
