package recipe

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/kilnproject/kiln/assembler/archive"
)

var (
	serviceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.@-]{0,63}$`)
	suiteRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,63}$`)
	archRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
)

// Restart policies of a service.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNo        = "no"
)

// PackageRequests returns system.packages as the archive client takes them.
func (r *Recipe) PackageRequests() []string { return append([]string(nil), r.System.Packages...) }

// packages checks system.packages, system.services and [archive].
func (v *validator) packages() {
	s := v.r.System
	names := map[string]int{}
	for i, p := range s.Packages {
		f := fmt.Sprintf("system.packages[%d]", i)
		rels, err := archive.ParseRelations(p)
		switch {
		case err != nil:
			v.add(f, `write a package name with an optional version, such as "python3" or "python3 (>= 3.11)"`, "%v", err)
			continue
		case len(rels) != 1:
			v.add(f, "give one package per entry (alternatives with '|')", "%q is not one package", p)
			continue
		}
		n := rels[0][0].Name
		if j, dup := names[n]; dup && len(rels[0]) == 1 {
			v.add(f, fmt.Sprintf("remove one of system.packages[%d] and system.packages[%d]", j, i), "package %s is listed twice", n)
		} else {
			names[n] = i
		}
	}
	svc := map[string]int{}
	for i, sv := range s.Services {
		f := fmt.Sprintf("system.services[%d]", i)
		switch {
		case !serviceRe.MatchString(sv.Name):
			v.add(f+".name", "use 1–64 lowercase letters, digits, '.', '_', '@' or '-'", "bad service name %q", sv.Name)
		default:
			if j, dup := svc[sv.Name]; dup {
				v.add(f+".name", fmt.Sprintf("rename system.services[%d] or system.services[%d]", j, i), "service %q is defined twice", sv.Name)
			} else {
				svc[sv.Name] = i
			}
		}
		switch {
		case strings.TrimSpace(sv.Command) == "":
			v.add(f+".command", `give the command line, such as "/usr/bin/python3 /opt/garden.py"`, "no command given")
		case strings.ContainsAny(sv.Command, "\n\r\x00"):
			v.add(f+".command", "write the command on one line (put longer scripts in a file)", "command has a line break")
		}
		switch {
		case sv.User != "" && !userRe.MatchString(sv.User):
			v.add(f+".user", "use a user name such as \"pi\", or leave it out for root", "bad user name %q", sv.User)
		case sv.User != "" && sv.User != "root" && !slices.ContainsFunc(s.Users, func(u User) bool { return u.Name == sv.User }):
			v.add(f+".user", "add the user as a [[system.users]] table (accounts that packages create are not made yet), or leave it out for root",
				"user %q is not defined", sv.User)
		}
		switch sv.Restart {
		case "", RestartAlways, RestartOnFailure, RestartNo:
		default:
			v.add(f+".restart", `use "always", "on-failure" or "no"`, "unknown restart policy %q", sv.Restart)
		}
	}
	a := v.r.Archive
	if a == nil {
		return
	}
	for i, m := range a.Mirrors {
		f := fmt.Sprintf("archive.mirrors[%d]", i)
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.add(f, "give the mirror's base URL, the directory holding dists/ and pool/", "bad mirror URL %q", m)
		}
	}
	if len(a.Mirrors) > 0 && len(a.Suites) == 0 {
		v.add(v.blame("archive.suites", "archive.mirrors"), `name the suites to use, such as ["bookworm", "bookworm-updates"]`, "mirrors given without suites")
	}
	for i, s := range a.Suites {
		if !suiteRe.MatchString(s) || strings.Contains(s, "..") {
			v.add(fmt.Sprintf("archive.suites[%d]", i), `use a suite or codename such as "bookworm"`, "bad suite %q", s)
		}
	}
	for i, c := range a.Components {
		if !suiteRe.MatchString(c) || strings.Contains(c, "..") {
			v.add(fmt.Sprintf("archive.components[%d]", i), `use a component such as "main"`, "bad component %q", c)
		}
	}
	if a.Keyring != "" {
		v.inputFile("archive.keyring", a.Keyring, false)
	}
	if a.Arch != "" && !archRe.MatchString(a.Arch) {
		v.add("archive.arch", `use a Debian architecture such as "amd64"`, "bad architecture %q", a.Arch)
	}
}
