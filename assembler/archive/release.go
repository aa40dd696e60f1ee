package archive

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// FileHash is one entry of a Release file's SHA256 list.
type FileHash struct {
	Size   int64
	SHA256 string
}

// Release is the verified content of an InRelease file.
type Release struct {
	Suite, Codename     string
	Date, ValidUntil    time.Time // ValidUntil is zero when the archive sets none
	AcquireByHash       bool
	NotAutomatic        bool
	ButAutomaticUpgrade bool
	NoArchAll           bool // "No-Support-for-Architecture-all: Packages": "all" packages are in every binary-<arch> index, binary-all need not be read
	Components          []string
	Architectures       []string
	Files               map[string]FileHash // path relative to dists/<suite>/ → size and sha256
}

// Priority is apt's default pin priority for the release's packages.
func (r *Release) Priority() int {
	switch {
	case r.NotAutomatic && r.ButAutomaticUpgrade:
		return 100
	case r.NotAutomatic:
		return 1
	}
	return 500
}

// ErrSignature is wrapped by errors for an InRelease whose signature does not verify.
var ErrSignature = errors.New("InRelease signature does not verify")

// maxClockSkew is how far in the future a Release's Date may lie (a host clock slightly behind
// the archive's).
const maxClockSkew = 24 * time.Hour

// VerifyInRelease checks the clearsigned InRelease data against keyring and returns the release
// it describes. Nothing outside the signed block is accepted; a Date far in the future or a
// Valid-Until in the past (relative to now) is refused, as apt refuses them.
func VerifyInRelease(data []byte, keyring openpgp.EntityList, now time.Time) (*Release, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	block, rest := clearsign.Decode(trimmed)
	if block == nil || !bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		return nil, fmt.Errorf("%w: not a clearsigned message", ErrSignature)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the signature", ErrSignature)
	}
	if _, err := block.VerifySignature(keyring, nil); err != nil {
		return nil, fmt.Errorf("%w: %v (is the keyring the archive's?)", ErrSignature, err)
	}
	rel, err := ParseRelease(block.Plaintext)
	if err != nil {
		return nil, err
	}
	if rel.Date.IsZero() {
		return nil, fmt.Errorf("InRelease has no Date")
	}
	if rel.Date.After(now.Add(maxClockSkew)) {
		return nil, fmt.Errorf("InRelease of %s is dated %s, in the future: check the system clock", rel.Suite, rel.Date.Format(time.RFC1123))
	}
	if !rel.ValidUntil.IsZero() && now.After(rel.ValidUntil) {
		return nil, fmt.Errorf("InRelease of %s expired on %s: the mirror is stale or replayed; use a current mirror", rel.Suite, rel.ValidUntil.Format(time.RFC1123))
	}
	return rel, nil
}

// ParseRelease parses the (already verified) text of a Release file.
func ParseRelease(text []byte) (*Release, error) {
	var paras []Paragraph
	lim := Limits{Field: 64 << 20, Paragraph: 64 << 20, Total: 64 << 20}
	if err := ParseDeb822(bytes.NewReader(text), lim, func(p Paragraph) error {
		paras = append(paras, append(Paragraph(nil), p...))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("Release: %w", err)
	}
	if len(paras) != 1 {
		return nil, fmt.Errorf("Release: %d paragraphs, want 1", len(paras))
	}
	p := paras[0]
	r := &Release{Files: map[string]FileHash{}}
	r.Suite, _ = p.Get("Suite")
	r.Codename, _ = p.Get("Codename")
	get := func(k string) string { v, _ := p.Get(k); return v }
	r.AcquireByHash = get("Acquire-By-Hash") == "yes"
	r.NotAutomatic = get("NotAutomatic") == "yes"
	r.ButAutomaticUpgrade = get("ButAutomaticUpgrades") == "yes"
	r.NoArchAll = strings.Contains(get("No-Support-for-Architecture-all"), "Packages")
	r.Components = strings.Fields(get("Components"))
	r.Architectures = strings.Fields(get("Architectures"))
	var err error
	if d := get("Date"); d != "" {
		if r.Date, err = parseReleaseTime(d); err != nil {
			return nil, fmt.Errorf("Release: Date: %w", err)
		}
	}
	if d := get("Valid-Until"); d != "" {
		if r.ValidUntil, err = parseReleaseTime(d); err != nil {
			return nil, fmt.Errorf("Release: Valid-Until: %w", err)
		}
	}
	for _, line := range strings.Split(get("SHA256"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !isSHA256(f[0]) {
			return nil, fmt.Errorf("Release: bad SHA256 line %.80q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("Release: bad size in SHA256 line %.80q", line)
		}
		r.Files[f[2]] = FileHash{Size: size, SHA256: f[0]}
	}
	if len(r.Files) == 0 {
		return nil, fmt.Errorf("Release: no SHA256 file list (an archive signed with SHA-1 or MD5 only is not supported)")
	}
	return r, nil
}

// parseReleaseTime reads the RFC 2822 dates of Release files, which apt also accepts with a
// single-digit day and with "UTC" for the zone.
func parseReleaseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123Z, time.RFC1123, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%.60q is not an RFC 2822 date", s)
}

// ReadKeyring reads an OpenPGP keyring file, binary (like /usr/share/keyrings/*.gpg) or
// ASCII-armored (*.asc).
func ReadKeyring(file string) (openpgp.EntityList, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("archive keyring: %w", err)
	}
	return parseKeyring(data, file)
}

func parseKeyring(data []byte, name string) (openpgp.EntityList, error) {
	var (
		keys openpgp.EntityList
		err  error
	)
	if bytes.Contains(data, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		keys, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		keys, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("archive keyring %s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("archive keyring %s holds no keys", name)
	}
	return keys, nil
}
