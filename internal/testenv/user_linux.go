package testenv

import (
	"bufio"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BuildUser is the ordinary user that rootless build tests run as; scripts/install-deps.sh
// creates it with subordinate id ranges.
const BuildUser = "kiln-build-test"

// UnprivilegedUser returns the credentials of BuildUser for a test, running as root, that drops
// privileges, or stops the test through Missing when it is not root or the user or its
// /etc/subuid and /etc/subgid ranges are missing.
func UnprivilegedUser(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "switching to the test user %s needs root", BuildUser)
	}
	u, err := user.Lookup(BuildUser)
	if err != nil {
		Missing(t, "no user %s (scripts/install-deps.sh creates it): %v", BuildUser, err)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if !hasEntry(f, BuildUser) {
			Missing(t, "%s has no range for %s (scripts/install-deps.sh adds one)", f, BuildUser)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

func hasEntry(file, name string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+":") {
			return true
		}
	}
	return false
}
