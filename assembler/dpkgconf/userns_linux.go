//go:build linux

package dpkgconf

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnproject/kiln/assembler/fstree"
)

// needUserns reports whether the scripts run in a user namespace: kiln runs as an ordinary user.
func needUserns() bool { return os.Geteuid() != 0 }

// idMaps are the newuidmap and newgidmap programs and their arguments after the pid.
type idMaps struct {
	newuidmap, newgidmap string
	uid, gid             []string
}

// subIDFiles are read for the user's ranges (a variable for tests).
var subIDFiles = [2]string{"/etc/subuid", "/etc/subgid"}

// hostMaps checks that this host lets the user build in a user namespace and returns the maps.
func hostMaps() (idMaps, error) {
	sudo := "or run kiln build with sudo"
	sysctl := func(name string) string {
		b, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		return strings.TrimSpace(string(b))
	}
	if sysctl("kernel.unprivileged_userns_clone") == "0" {
		return idMaps{}, fmt.Errorf("%w as an ordinary user: this kernel does not let ordinary users create user namespaces (kernel.unprivileged_userns_clone = 0); enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`, %s", ErrUnsupported, sudo)
	}
	if sysctl("user.max_user_namespaces") == "0" {
		return idMaps{}, fmt.Errorf("%w as an ordinary user: user namespaces are off (user.max_user_namespaces = 0); enable them with `sudo sysctl -w user.max_user_namespaces=10000`, %s", ErrUnsupported, sudo)
	}
	var m idMaps
	var err error
	for _, p := range []*string{&m.newuidmap, &m.newgidmap} {
		name := "newuidmap"
		if p == &m.newgidmap {
			name = "newgidmap"
		}
		if *p, err = exec.LookPath(name); err != nil {
			return idMaps{}, fmt.Errorf("%w as an ordinary user: %s is missing; install the uidmap package (`sudo apt-get install uidmap`), %s", ErrUnsupported, name, sudo)
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	for i, f := range subIDFiles {
		r, err := readSubIDs(f, name, uint32(uid))
		if err != nil {
			return idMaps{}, fmt.Errorf("%w as an ordinary user: %v; give %s a range of %d ids no other user has with `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s`, %s",
				ErrUnsupported, err, name, MinSubIDs+1, name, sudo)
		}
		if i == 0 {
			m.uid = MapArgs(uint32(uid), r)
		} else {
			m.gid = MapArgs(uint32(gid), r)
		}
	}
	return m, nil
}

func readSubIDs(file, name string, id uint32) (SubIDRange, error) {
	f, err := os.Open(file)
	if err != nil {
		return SubIDRange{}, fmt.Errorf("%w for %s: %v", ErrNoSubIDs, name, err)
	}
	defer f.Close()
	r, err := ParseSubIDs(f, name, id)
	if err != nil {
		return SubIDRange{}, fmt.Errorf("%s: %w", file, err)
	}
	return r, nil
}

// runUserns runs req in a child in new user, mount and PID namespaces and returns the script's
// output and the configured tree. The child is killed when ctx ends; what it leaves behind is
// removed by a second child (the user cannot remove files owned by subordinate ids).
func runUserns(ctx context.Context, req request, old *fstree.Tree) ([]byte, *fstree.Tree, error) {
	maps, err := hostMaps()
	if err != nil {
		return nil, nil, err
	}
	out, t, err := runChild(ctx, req, maps, old)
	if err != nil {
		if _, serr := os.Lstat(req.Root); serr == nil {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			if cout, _, cerr := runChild(cctx, request{Root: req.Root, Remove: true}, maps, nil); cerr != nil {
				err = fmt.Errorf("%w (and removing %s failed: %v: %s)", err, req.Root, cerr, tail(cout, 500))
			}
			cancel()
		}
	}
	return out, t, err
}

// runChild starts kiln's ChildCommand in new namespaces, writes its id maps, lets it run and
// reads its tree.
func runChild(ctx context.Context, req request, maps idMaps, old *fstree.Tree) ([]byte, *fstree.Tree, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer syncW.Close()
	tarR, tarW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		return nil, nil, err
	}
	defer tarR.Close()
	var out bytes.Buffer
	// /proc/self/exe: this very program, even if its file has been replaced since it started.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", ChildCommand)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"}
	cmd.Stdin = bytes.NewReader(body)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.ExtraFiles = []*os.File{syncR, tarW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.WaitDelay = 5 * time.Second // the PID namespace ends with the child: nothing outlives it
	err = cmd.Start()
	syncR.Close()
	tarW.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%w as an ordinary user: create a user namespace: %v%s", ErrUnsupported, err, usernsHint())
	}
	fail := func(err error) ([]byte, *fstree.Tree, error) {
		cmd.Process.Kill()
		cmd.Wait()
		return out.Bytes(), nil, err
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, m := range []struct {
		prog string
		args []string
	}{{maps.newuidmap, maps.uid}, {maps.newgidmap, maps.gid}} {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := exec.CommandContext(mctx, m.prog, append([]string{pid}, m.args...)...).CombinedOutput()
		cancel()
		if err != nil {
			return fail(fmt.Errorf("%w as an ordinary user: %s %s %s: %v: %s (check /etc/subuid and /etc/subgid)",
				ErrUnsupported, filepath.Base(m.prog), pid, strings.Join(m.args, " "), err, bytes.TrimSpace(b)))
		}
	}
	if _, err := syncW.Write([]byte{1}); err != nil {
		return fail(fmt.Errorf("start the namespace child: %w", err))
	}
	syncW.Close()
	type result struct {
		t   *fstree.Tree
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		if old != nil {
			r.t, r.err = readTar(old, tarR)
		}
		io.Copy(io.Discard, tarR) // the child never blocks on a reader that stopped
		ch <- r
	}()
	werr := cmd.Wait()
	r := <-ch // EOF once the child has exited: no other process holds the pipe
	if werr != nil {
		if ctx.Err() != nil {
			werr = ctx.Err()
		} else if h := usernsHint(); h != "" && bytes.Contains(out.Bytes(), []byte("operation not permitted")) {
			werr = fmt.Errorf("%w%s", werr, h)
		}
		return out.Bytes(), nil, werr
	}
	if r.err != nil {
		return out.Bytes(), nil, r.err
	}
	return out.Bytes(), r.t, nil
}

// usernsHint explains a namespace refused by Ubuntu's AppArmor restriction.
func usernsHint() string {
	if b, _ := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); strings.TrimSpace(string(b)) == "1" {
		return " (AppArmor restricts user namespaces on this host: kernel.apparmor_restrict_unprivileged_userns = 1; run kiln build with sudo, or give kiln an AppArmor profile with `userns,`)"
	}
	return ""
}

// ChildMain is the namespace child (ChildCommand): it waits until the parent has written its id
// maps, sets the tree's owners, runs the script in a chroot with /dev/null, /dev/zero and the
// random devices bound from the host, writes the tree as tar to fd 4 with the in-image owners and
// removes it. It exits 2 when the script fails, 1 on any other error.
func ChildMain(args []string) int {
	if len(args) == 0 {
		// Stage one: wait for the maps, then execute again: the capabilities in the namespace
		// were dropped when kiln started in it unmapped, and come back with an exec as id 0.
		ready := os.NewFile(3, "sync")
		if ready == nil {
			fmt.Fprintln(os.Stderr, "kiln: "+ChildCommand+" is run by kiln itself")
			return 1
		}
		var b [1]byte
		if n, _ := ready.Read(b[:]); n != 1 {
			fmt.Fprintln(os.Stderr, "kiln: the user namespace got no id maps")
			return 1
		}
		ready.Close()
		err := syscall.Exec("/proc/self/exe", []string{os.Args[0], ChildCommand, "mapped"}, os.Environ())
		fmt.Fprintln(os.Stderr, "kiln: run in the user namespace:", err)
		return 1
	}
	unix.CloseOnExec(4) // the scripts do not get the tree's pipe
	tarOut := os.NewFile(4, "tar")
	if tarOut == nil {
		fmt.Fprintln(os.Stderr, "kiln: "+ChildCommand+" is run by kiln itself")
		return 1
	}
	var req request
	if err := json.NewDecoder(io.LimitReader(os.Stdin, 1<<30)).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "kiln: read the request:", err)
		return 1
	}
	if !filepath.IsAbs(req.Root) || filepath.Clean(req.Root) == "/" {
		fmt.Fprintln(os.Stderr, "kiln: bad build root", req.Root)
		return 1
	}
	_ = unix.Setgroups(nil) // the host's supplementary groups are not mapped
	if req.Remove {
		if err := os.RemoveAll(req.Root); err != nil {
			fmt.Fprintln(os.Stderr, "kiln:", err)
			return 1
		}
		return 0
	}
	code, err := childRun(req, tarOut)
	if rerr := os.RemoveAll(req.Root); rerr != nil && err == nil {
		code, err = 1, rerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
	}
	return code
}

func childRun(req request, tarOut *os.File) (int, error) {
	root := req.Root
	mtime := time.Unix(req.Epoch, 0)
	for _, e := range req.Owns {
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		if err := own(p, &fstree.Node{Mode: fs.FileMode(e.Mode), UID: e.UID, GID: e.GID}, mtime); err != nil {
			return 1, fmt.Errorf("set the owner of /%s to %d:%d: %w", e.Path, e.UID, e.GID, err)
		}
	}
	if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 1, fmt.Errorf("make the mounts private: %w", err)
	}
	var mounted []string
	defer func() {
		for _, p := range mounted {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}()
	for _, d := range devices {
		p := filepath.Join(root, "dev", d.name)
		os.Remove(p)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return 1, fmt.Errorf("create /dev/%s in the build root: %w", d.name, err)
		}
		if err := unix.Mount("/dev/"+d.name, p, "", unix.MS_BIND, ""); err != nil {
			return 1, fmt.Errorf("bind /dev/%s into the build root: %w", d.name, err)
		}
		mounted = append(mounted, p)
	}
	for _, d := range []string{"tmp", "run", "proc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	cmd := exec.Command(req.Shell, "-c", req.Script)
	cmd.Dir = "/"
	cmd.Env = req.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	// As the namespace's init, end whatever the scripts left running before the tree is read.
	if os.Getpid() == 1 {
		_ = syscall.Kill(-1, syscall.SIGKILL)
	}
	if err != nil {
		return 2, fmt.Errorf("the maintainer scripts failed: %w", err)
	}
	for _, p := range mounted {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			return 1, fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	mounted = nil
	if err := removeGenerated(root); err != nil {
		return 1, err
	}
	bw := bufio.NewWriterSize(tarOut, 1<<20)
	tw := tar.NewWriter(bw)
	err = walkRoot(root, func(rel, p string, fi fs.FileInfo) error {
		uid, gid := owner(fi)
		var target string
		if fi.Mode()&fs.ModeSymlink != 0 {
			var err error
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		return writeTarEntry(tw, rel, fi, uid, gid, target, func() (io.ReadCloser, error) { return os.Open(p) })
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tarOut.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, syscall.EPIPE) {
		return 1, fmt.Errorf("send the configured tree: %w", err)
	}
	return 0, err
}

// Check reports whether this host can run maintainer scripts: as root always, as an ordinary
// user when it may create user namespaces and has subordinate id ranges.
func Check() error {
	if !needUserns() {
		return nil
	}
	_, err := hostMaps()
	return err
}
