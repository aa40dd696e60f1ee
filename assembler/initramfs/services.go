package initramfs

import (
	"fmt"
	"strings"
)

// Service is a program init starts at boot and supervises.
type Service struct {
	Name    string // file name under /etc/kiln/services and /var/log/<name>.log
	Command string // run by /bin/sh -c
	User    string // "" or "root": root
	// Restart is "always" (the default), "on-failure" (restart after a non-zero exit) or "no".
	Restart      string
	AfterNetwork bool // wait (up to 60 s) for a default route before starting
}

// serviceDir holds the services' supervisor scripts.
const serviceDir = "etc/kiln/services"

// addServices writes a supervisor script per service and a respawn line for it in /etc/inittab.
// The script runs the command as its user with output appended to /var/log/<name>.log; init
// restarts it when it ends, a second after, unless its policy says it is done.
func addServices(t *tree, s *Spec) error {
	if len(s.Services) == 0 {
		return nil
	}
	tab, ok := t.files["etc/inittab"]
	if !ok {
		return fmt.Errorf("services: no /etc/inittab")
	}
	var lines strings.Builder
	lines.WriteString("# Services of the recipe, supervised by init (scripts in /" + serviceDir + ").\n")
	for _, sv := range s.Services {
		if sv.Name == "" || strings.ContainsAny(sv.Name, "/ \n:") {
			return fmt.Errorf("%w: service name %q", ErrBadSetting, sv.Name)
		}
		if strings.ContainsAny(sv.Command, "\n\r\x00") {
			return fmt.Errorf("%w: service %s: command has a line break", ErrBadSetting, sv.Name)
		}
		script, err := serviceScript(sv)
		if err != nil {
			return err
		}
		p := serviceDir + "/" + sv.Name
		if err := t.file(p, 0o755, script, "kiln:service "+sv.Name); err != nil {
			return err
		}
		lines.WriteString("::respawn:/" + p + "\n")
	}
	// Before the gettys and the shutdown actions, after sysinit.
	data := string(tab.Data)
	at := strings.Index(data, "\n::respawn:")
	if at < 0 {
		at = len(data) - 1
	}
	data = data[:at+1] + lines.String() + data[at+1:]
	return t.file("etc/inittab", tab.Mode, []byte(data), tab.Origin)
}

func serviceScript(sv Service) ([]byte, error) {
	var b strings.Builder
	name := sv.Name
	fmt.Fprintf(&b, "#!/bin/sh\n# Service %s, written by kiln from the recipe. Supervised by init (/etc/inittab);\n# output in /var/log/%s.log.\n", name, name)
	fmt.Fprintf(&b, "done=/run/kiln-service.%s.done\n[ -e \"$done\" ] && exec sleep 2147483647\n", name)
	if sv.AfterNetwork {
		b.WriteString("i=0\nwhile ! ip route 2>/dev/null | grep -q '^default' && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done\n")
	}
	fmt.Fprintf(&b, "exec >>/var/log/%s.log 2>&1\n", name)
	cmd := shellQuote(sv.Command)
	if sv.User == "" || sv.User == "root" {
		fmt.Fprintf(&b, "/bin/sh -c %s\n", cmd)
	} else {
		fmt.Fprintf(&b, "su -s /bin/sh -c %s %s\n", cmd, shellQuote(sv.User))
	}
	fmt.Fprintf(&b, "rc=$?\necho \"kiln: service %s exited with status $rc\"\n", name)
	switch sv.Restart {
	case "", "always":
	case "on-failure":
		b.WriteString("[ $rc -eq 0 ] && : >\"$done\"\n")
	case "no":
		b.WriteString(": >\"$done\"\n")
	default:
		return nil, fmt.Errorf("%w: service %s: restart policy %q", ErrBadSetting, name, sv.Restart)
	}
	b.WriteString("sleep 1\n")
	return []byte(b.String()), nil
}
