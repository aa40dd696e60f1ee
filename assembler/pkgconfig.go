package assembler

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/dpkgconf"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/progress"
)

// DefaultSSHServer is the SSH server a package image gets when a user has SSH keys and the recipe
// names none: dropbear's binaries are 0.6 MB against openssh-server's 1.9 MB plus openssh-client,
// PAM and Kerberos libraries, and it starts in a fraction of the time under emulation.
const DefaultSSHServer = "dropbear-bin"

// sshServers are the packages that bring an SSH server.
var sshServers = []string{"dropbear", "dropbear-bin", "openssh-server"}

// hostKeyDir is where an image's SSH host keys live: made on first boot, on the data partition.
const hostKeyDir = "/data/kiln/ssh"

// packageRequests returns the packages a recipe asks for: system.packages, an SSH server when a
// user has SSH keys and the recipe installs packages but names no server, and the Wi-Fi packages
// when it configures Wi-Fi.
func packageRequests(r *recipe.Recipe) []string {
	reqs := r.PackageRequests()
	if len(reqs) == 0 {
		return reqs
	}
	named := func(pkgs ...string) bool {
		for _, q := range reqs {
			name, _, _ := strings.Cut(q, " ")
			name, _, _ = strings.Cut(name, ":")
			if slices.Contains(pkgs, name) {
				return true
			}
		}
		return false
	}
	if hasSSHKeys(r) && !named(sshServers...) {
		reqs = append(reqs, DefaultSSHServer)
	}
	if wantsWiFi(r) {
		for _, p := range wifiRequests(r) {
			if !named(p) {
				reqs = append(reqs, p)
			}
		}
	}
	return reqs
}

func hasSSHKeys(r *recipe.Recipe) bool {
	for _, u := range r.System.Users {
		if len(u.SSHKeys) > 0 {
			return true
		}
	}
	return false
}

func hasPassword(r *recipe.Recipe) bool {
	for _, u := range r.System.Users {
		if u.PasswordHash != "" {
			return true
		}
	}
	return false
}

// configurePackages runs the unpacked packages' maintainer scripts (dpkgconf).
func (b *builder) configurePackages(ctx context.Context, t *fstree.Tree, pkgs []dpkgconf.Package) (*fstree.Tree, error) {
	b.prog.Report(progress.Event{Phase: PhaseInputs, Message: fmt.Sprintf("configuring %d packages", len(pkgs))})
	start := time.Now()
	nt, err := dpkgconf.Configure(ctx, t, dpkgconf.Options{Dir: b.st.path("configure"), Packages: pkgs,
		SourceDateEpoch: b.opts.SourceDateEpoch, Log: b.log})
	if err != nil {
		return nil, err
	}
	b.log.WithFields(logrus.Fields{"packages": len(pkgs), "seconds": time.Since(start).Seconds()}).Info("packages configured")
	return nt, nil
}

// packageServices adds the services init starts besides the recipe's: the SSH server when a user
// has keys, and the units the packages enabled.
func (b *builder) packageServices(t *fstree.Tree) {
	taken := map[string]bool{}
	for _, sv := range b.r.System.Services {
		taken[sv.Name] = true
	}
	if sv, ok := sshService(t, !hasPassword(b.r)); ok && hasSSHKeys(b.r) && !taken[sv.Name] {
		b.inputs.services = append(b.inputs.services, sv)
		taken[sv.Name] = true
	}
	for _, sv := range unitServices(t) {
		if !taken[sv.Name] {
			b.inputs.services = append(b.inputs.services, sv)
			taken[sv.Name] = true
		}
	}
}

// sshService is the supervised SSH server of an image with dropbear or OpenSSH: host keys made on
// first boot in hostKeyDir (kept across reboots and updates, never in the image) and password
// login refused unless passwords is false.
func sshService(t *fstree.Tree, noPasswords bool) (initramfs.Service, bool) {
	k := hostKeyDir
	switch {
	case t.Get("usr/sbin/dropbear") != nil:
		cmd := fmt.Sprintf("mkdir -p %s && for t in ed25519 ecdsa; do f=%s/dropbear_${t}_host_key; "+
			"[ -s $f ] || { dropbearkey -t $t -f $f >/dev/null && sync; } || exit 1; done; "+
			"exec /usr/sbin/dropbear -F -E -p 22 -r %s/dropbear_ed25519_host_key -r %s/dropbear_ecdsa_host_key", k, k, k, k)
		if noPasswords {
			cmd += " -s"
		}
		return initramfs.Service{Name: "dropbear", Command: cmd, Restart: recipe.RestartAlways}, true
	case t.Get("usr/sbin/sshd") != nil:
		// The keys are copied to /run with mode 0600: sshd refuses keys others can read, and the
		// FAT data partition has no per-file modes.
		cmd := fmt.Sprintf("mkdir -p %s /run/sshd /run/kiln-ssh && chmod 700 /run/kiln-ssh && for t in ed25519 ecdsa; do f=%s/ssh_host_${t}_key; "+
			"[ -s $f ] || { ssh-keygen -q -N '' -t $t -f $f && sync; } || exit 1; cp $f /run/kiln-ssh/ && chmod 600 /run/kiln-ssh/ssh_host_${t}_key; done; "+
			"exec /usr/sbin/sshd -D -e -h /run/kiln-ssh/ssh_host_ed25519_key -h /run/kiln-ssh/ssh_host_ecdsa_key", k, k)
		if noPasswords {
			cmd += " -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no"
		}
		return initramfs.Service{Name: "sshd", Command: cmd, Restart: recipe.RestartAlways}, true
	}
	return initramfs.Service{}, false
}

// skipUnits are package units the image does not start from their unit file: the SSH servers
// (sshService runs them with keys on the data partition) and wpa_supplicant's D-Bus service
// (init starts the supplicant on the wireless interface with the recipe's network).
var skipUnits = []string{"ssh.service", "sshd.service", "dropbear.service", "wpa_supplicant.service"}

// unitServices turns the systemd units the packages' scripts enabled (links in
// /etc/systemd/system/multi-user.target.wants) into services supervised by init: ExecStartPre
// and ExecStart run in order with the unit's User, Environment and EnvironmentFile; Restart maps to
// the restart policy. Forking daemons, templates and units using systemd specifiers are left out.
func unitServices(t *fstree.Tree) []initramfs.Service {
	const wants = "etc/systemd/system/multi-user.target.wants"
	var names []string
	_ = t.Walk(func(n *fstree.Node) error {
		if path.Dir(n.Path) == wants && strings.HasSuffix(n.Path, ".service") {
			names = append(names, path.Base(n.Path))
		}
		return nil
	})
	sort.Strings(names)
	var out []initramfs.Service
	for _, name := range names {
		if slices.Contains(skipUnits, name) || strings.Contains(name, "@") {
			continue
		}
		var unit *fstree.Node
		for _, dir := range []string{"etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"} {
			if n := t.Get(dir + "/" + name); n != nil && n.IsRegular() {
				unit = n
				break
			}
		}
		if unit == nil {
			continue
		}
		if sv, ok := unitService(strings.TrimSuffix(name, ".service"), unit.Data); ok {
			out = append(out, sv)
		}
	}
	return out
}

// unitService translates one unit's [Service] section.
func unitService(name string, unit []byte) (initramfs.Service, bool) {
	var typ, user, restart string
	var pre, start, env, envFiles []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		if l[0] == '[' {
			section = l
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || section != "[Service]" {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "Type":
			typ = v
		case "User":
			user = v
		case "Restart":
			restart = v
		case "ExecStartPre":
			pre = append(pre, v)
		case "ExecStart":
			if v != "" {
				start = append(start, v)
			}
		case "Environment":
			env = append(env, v)
		case "EnvironmentFile":
			envFiles = append(envFiles, v)
		}
	}
	if typ == "forking" || len(start) == 0 || strings.Contains(string(unit), "\\\n") {
		return initramfs.Service{}, false
	}
	var cmd []string
	for _, f := range envFiles {
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		if optional {
			cmd = append(cmd, fmt.Sprintf("if [ -r %s ]; then set -a; . %s; set +a; fi", f, f))
		} else {
			cmd = append(cmd, fmt.Sprintf("set -a; . %s || exit 1; set +a", f))
		}
	}
	for _, e := range env {
		cmd = append(cmd, "export "+e)
	}
	exec := func(line string) (string, bool) {
		ignore := false
		for len(line) > 0 && strings.ContainsRune("-@+!:", rune(line[0])) {
			ignore = ignore || line[0] == '-'
			line = line[1:]
		}
		return line, ignore
	}
	for _, p := range pre {
		c, ignore := exec(p)
		if ignore {
			cmd = append(cmd, c+" || true")
		} else {
			cmd = append(cmd, c+" || exit 1")
		}
	}
	for i, s := range start {
		c, _ := exec(s)
		if i == len(start)-1 && typ != "oneshot" {
			c = "exec " + c
		}
		cmd = append(cmd, c)
	}
	policy := recipe.RestartNo
	switch restart {
	case "always":
		policy = recipe.RestartAlways
	case "on-failure", "on-abnormal", "on-abort", "on-watchdog":
		policy = recipe.RestartOnFailure
	}
	if typ == "oneshot" {
		policy = recipe.RestartNo
	}
	command := strings.Join(cmd, "; ")
	if strings.ContainsAny(command, "\r\x00%") {
		return initramfs.Service{}, false // systemd specifiers (%i) and control characters have no shell form
	}
	return initramfs.Service{Name: name, Command: command, User: user, Restart: policy}, true
}
