package dpkgconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MinSubIDs is the smallest subordinate range a rootless build accepts: in-image ids 1..65535
// (Debian's system users, nobody and nogroup) each need a host id.
const MinSubIDs = 65535

// SubIDRange is one range of subordinate ids from /etc/subuid or /etc/subgid.
type SubIDRange struct {
	Start, Count uint32
}

// ErrNoSubIDs: the user has no usable subordinate id range.
var ErrNoSubIDs = errors.New("no subordinate id range")

// ParseSubIDs returns the first range of at least MinSubIDs ids that the file (in subuid(5)
// form: "user:start:count", the user by name or number) gives to the user name or the id.
// Malformed lines are skipped as the shadow tools skip them; reading stops after 1 MiB.
func ParseSubIDs(r io.Reader, name string, id uint32) (SubIDRange, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 4096), 64<<10)
	small := false
	idStr := strconv.FormatUint(uint64(id), 10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != idStr) || f[0] == "" {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			continue
		}
		if count < MinSubIDs {
			small = true
			continue
		}
		return SubIDRange{Start: uint32(start), Count: MinSubIDs}, nil
	}
	if err := sc.Err(); err != nil {
		return SubIDRange{}, err
	}
	if small {
		return SubIDRange{}, fmt.Errorf("%w of %d ids for %s (only smaller ones)", ErrNoSubIDs, MinSubIDs, name)
	}
	return SubIDRange{}, fmt.Errorf("%w for %s", ErrNoSubIDs, name)
}

// MapArgs are the newuidmap/newgidmap arguments after the pid: in-image id 0 is the user's own
// host id and 1..Count the subordinate range, as mmdebstrap's unshare mode maps them.
func MapArgs(self uint32, r SubIDRange) []string {
	return []string{"0", strconv.FormatUint(uint64(self), 10), "1",
		"1", strconv.FormatUint(uint64(r.Start), 10), strconv.FormatUint(uint64(r.Count), 10)}
}
