package recipe

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kilnproject/kiln/assembler/board"
	"github.com/kilnproject/kiln/assembler/internal/tomllines"
)

// Disk layout rules shared by validation and the image builder.
const (
	// PartitionAlign is where partitions start and how their sizes are rounded: 1 MiB, like
	// sgdisk and parted. The first MiB holds the protective MBR and the primary GPT.
	PartitionAlign = MiB
	// GPTTail is kept free at the end of the disk for the backup GPT (aligned up to 1 MiB).
	GPTTail = MiB
	// MinFATPartition is the smallest FAT32 partition Kiln makes (65,525 clusters of 512 bytes,
	// rounded up to whole MiB).
	MinFATPartition = 33 * MiB
)

// Layout is the partition layout a Board describes, in bytes.
type Layout struct {
	ESPOffset, ESPSize   int64
	DataOffset, DataSize int64
	DiskSize             int64
}

// Layout computes the partition layout: the ESP at 1 MiB, then the data partition (DataSize, or the
// rest of the disk before the backup GPT when DataSize is 0). Validate checks that it fits.
func (b Board) Layout() Layout {
	l := Layout{DiskSize: int64(b.DiskSize), ESPOffset: int64(PartitionAlign), ESPSize: alignUp(int64(b.ESPSize))}
	l.DataOffset = l.ESPOffset + l.ESPSize
	l.DataSize = alignUp(int64(b.DataSize))
	if b.DataSize == 0 {
		l.DataSize = (l.DiskSize-int64(GPTTail))/int64(PartitionAlign)*int64(PartitionAlign) - l.DataOffset
	}
	return l
}

func alignUp(n int64) int64 {
	a := int64(PartitionAlign)
	return (n + a - 1) / a * a
}

// Validate checks the recipe's values and the input files it names; it returns an *Error listing
// every problem, or nil. Parse and Load call it; a front end that edits a Recipe calls it again.
func (r *Recipe) Validate() error {
	v := &validator{r: r}
	v.check()
	if len(v.probs) > 0 {
		return newError(r.Path, v.probs)
	}
	return nil
}

type validator struct {
	r     *Recipe
	probs []Problem
}

func (v *validator) add(field, hint, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.r.Path, Line: tomllines.LineOf(v.r.lines, field), Field: field,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// set reports whether the recipe file itself sets field (not a default).
func (v *validator) set(field string) bool { _, ok := v.r.lines[field]; return ok }

// blame returns the first of fields the file sets, else the first.
func (v *validator) blame(fields ...string) string {
	for _, f := range fields {
		if v.set(f) {
			return f
		}
	}
	return fields[0]
}

var (
	nameRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,47}$`)
	labelRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userRe     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	channelRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	pkgRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
	moduleRe   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	fatLabelRe = regexp.MustCompile(`^[A-Z0-9 _!#$%&'()@^{}~-]{1,11}$`)
	countryRe  = regexp.MustCompile(`^[A-Z]{2}$`)
	cryptRe    = regexp.MustCompile(`^\$(1|5|6)\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]+$`)
)

func (v *validator) check() {
	r := v.r
	if r.Kiln < MinFormat || r.Kiln > MaxFormat {
		v.add("kiln", "", "recipe format %d is not supported by this kiln (supports %d–%d)", r.Kiln, MinFormat, MaxFormat)
	}
	if !nameRe.MatchString(r.Name) {
		v.add("name", "use 1–48 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit (it names the image files)",
			"bad name %q", r.Name)
	}
	if _, err := ParseVersion(r.Version); err != nil {
		v.add("version", `use MAJOR.MINOR.PATCH such as "1.0.0" or "1.1.0-rc.1"`, "%v", err)
	} else if strings.Contains(r.Version, "+") {
		v.add("version", `drop the "+…" part: systemd-boot's boot counting uses '+' in the image file names`,
			"version %q has build metadata", r.Version)
	}
	if r.Arch != board.ArchX86_64 && r.Arch != board.ArchAArch64 {
		v.add("arch", `use "x86_64" or "aarch64", or name a board in [board] name`, "unsupported arch %q", r.Arch)
	}
	if strings.ContainsAny(r.Description, "\n\r") {
		v.add("description", "keep it to one line", "description has a line break")
	}
	v.board()
	v.kernel()
	v.system()
	v.packages()
	v.data()
	v.update()
}

func (v *validator) board() {
	b := v.r.Board
	if b.Name != "" {
		if _, err := v.r.LoadBoard(); err != nil {
			v.add("board.name", "name a built-in board ("+strings.Join(board.Names(), ", ")+") or the path of a board file", "%v", err)
		}
	}
	switch b.Firmware {
	case FirmwareUEFI:
	case FirmwareBIOS, FirmwareHybrid:
		if v.r.Arch != board.ArchX86_64 {
			v.add(v.blame("board.firmware", "board.name", "arch"), `use "uefi": legacy BIOS exists only on x86_64`,
				"firmware %q needs arch x86_64, the recipe builds for %s", b.Firmware, v.r.Arch)
		}
	case FirmwareRPi:
		if v.r.Arch != board.ArchAArch64 {
			v.add(v.blame("board.firmware", "arch"), `name the board instead: [board] name = "rpi"`,
				"firmware %q needs arch aarch64, the recipe builds for %s", b.Firmware, v.r.Arch)
		}
	default:
		v.add("board.firmware", `use "uefi", "bios", "hybrid" or "rpi"`, "unknown firmware %q", b.Firmware)
	}
	if v.r.Outputs.ISO && v.r.Arch != board.ArchX86_64 {
		v.add(v.blame("outputs.iso", "board.name", "arch"), "leave iso out: the ISO boots x86_64 PCs only", "ISO output needs arch x86_64")
	}
	sizeOK := true
	for _, f := range []struct {
		name string
		s    Size
	}{{"board.disk_size", b.DiskSize}, {"board.esp_size", b.ESPSize}, {"board.data_size", b.DataSize}, {"board.root_size", b.RootSize}} {
		if f.s%512 != 0 {
			v.add(f.name, `use whole MiB, such as "512MiB"`, "size %d is not a multiple of the 512-byte sector", int64(f.s))
			sizeOK = false
		}
	}
	if b.ESPSize < MinFATPartition {
		v.add("board.esp_size", fmt.Sprintf("make it at least %v (FAT32 needs 65,525 clusters)", MinFATPartition),
			"ESP of %v is too small", b.ESPSize)
		sizeOK = false
	}
	if b.DataSize != 0 && b.DataSize < MinFATPartition {
		v.add("board.data_size", fmt.Sprintf(`make it at least %v, or "0" for the rest of the disk`, MinFATPartition),
			"data partition of %v is too small", b.DataSize)
		sizeOK = false
	}
	if sizeOK {
		l := b.Layout()
		need := l.DataOffset + l.DataSize + int64(GPTTail)
		if b.DataSize == 0 {
			need = l.DataOffset + int64(MinFATPartition) + int64(GPTTail)
		}
		if need > l.DiskSize {
			v.add(v.blame("board.disk_size", "board.esp_size", "board.data_size"),
				fmt.Sprintf("make disk_size at least %v or shrink the partitions", Size(need)),
				"partitions do not fit the disk: 1MiB GPT + ESP %v + data %s + 1MiB backup GPT > disk %v",
				b.ESPSize, dataDesc(b.DataSize), b.DiskSize)
		}
	}
	if b.Firmware != FirmwareRPi { // the UKI's stub comes from it, on BIOS too
		v.packageRef("board.bootloader", b.Bootloader)
	}
	if b.BIOS() || v.r.Outputs.ISO {
		v.packageRef("board.grub", b.GRUB)
	}
	if b.BootTries < 1 || b.BootTries > 10 {
		v.add("board.boot_tries", "use 1–10 (3 is a good choice)", "boot_tries %d is out of range", b.BootTries)
	}
}

func dataDesc(s Size) string {
	if s == 0 {
		return "(rest, at least " + MinFATPartition.String() + ")"
	}
	return s.String()
}

// packageRef checks a package reference: a name in the input cache, or a .deb path that must exist.
func (v *validator) packageRef(field, ref string) {
	switch {
	case ref == "":
		v.add(field, "name a package in the input cache or a path to a .deb", "no package given")
	case IsPackagePath(ref):
		v.inputFile(field, ref, false)
	case !pkgRe.MatchString(ref):
		v.add(field, "name a Debian package (lowercase) or a path ending in .deb", "bad package name %q", ref)
	}
}

// inputFile checks that a file named by the recipe exists (relative to the recipe's directory).
func (v *validator) inputFile(field, p string, dirOK bool) {
	full := v.r.Resolve(p)
	fi, err := os.Stat(full)
	switch {
	case err != nil && os.IsNotExist(err):
		where := ""
		if !filepath.IsAbs(p) && !strings.HasPrefix(p, "~/") && v.r.Dir != "" {
			where = " (relative to " + v.r.Dir + ")"
		}
		v.add(field, "check the path"+where, "input %s does not exist", p)
	case err != nil:
		v.add(field, "check the file's permissions", "input %s: %v", p, err)
	case fi.IsDir() && !dirOK:
		v.add(field, "name a file, not a directory", "input %s is a directory", p)
	case !fi.IsDir() && !fi.Mode().IsRegular():
		v.add(field, "name a regular file", "input %s is a device, a pipe or a socket, not a regular file", p)
	}
}

func (v *validator) kernel() {
	k := v.r.Kernel
	v.packageRef("kernel.package", k.Package)
	if a := board.KernelArch(k.Package); a != "" && a != v.r.DebianArch() {
		v.add(v.blame("kernel.package", "board.name", "arch"), fmt.Sprintf("use a kernel built for %s, such as linux-image-%s", v.r.DebianArch(), v.r.DebianArch()),
			"kernel %s is built for %s, the recipe builds for %s", k.Package, a, v.r.Arch)
	}
	if strings.ContainsAny(k.Cmdline, "\n\r\x00") {
		v.add("kernel.cmdline", "write the command line on one line", "cmdline has a line break")
	}
	if len(k.Cmdline) > 2000 {
		v.add("kernel.cmdline", "shorten it", "cmdline is %d bytes (the kernel takes 2048)", len(k.Cmdline))
	}
	for i, m := range k.Modules {
		if !moduleRe.MatchString(strings.TrimSuffix(m, ".ko")) {
			v.add(fmt.Sprintf("kernel.modules[%d]", i), `give module names such as "virtio_blk"`, "bad module name %q", m)
		}
	}
}

func (v *validator) system() {
	s := v.r.System
	if !validHostname(s.Hostname) {
		v.add("system.hostname", "use letters, digits and '-' (1–63 per label, not starting or ending with '-'), such as \"kiln-demo\"",
			"bad hostname %q", s.Hostname)
	}
	v.packageRef("system.busybox", s.Busybox)
	switch s.Console {
	case "", "auto", "shell", "login":
	default:
		v.add("system.console", `use "auto", "shell" or "login"`, "unknown console mode %q", s.Console)
	}
	v.firstBoot(s)
	v.files(s)
}

// firstBoot checks the settings a first boot applies: timezone, users (with their hashes and keys)
// and Wi-Fi. Third-party images get the same checks through CheckFirstBoot.
func (v *validator) firstBoot(s System) {
	if s.Timezone != "" {
		if strings.Contains(s.Timezone, "..") || strings.HasPrefix(s.Timezone, "/") {
			v.add("system.timezone", `use an IANA zone such as "Europe/Berlin" or "UTC"`, "bad timezone %q", s.Timezone)
		} else if _, err := time.LoadLocation(s.Timezone); err != nil {
			v.add("system.timezone", `use an IANA zone such as "Europe/Berlin" or "UTC"`, "unknown timezone %q", s.Timezone)
		}
	}
	names := map[string]int{}
	for i, u := range s.Users {
		f := fmt.Sprintf("system.users[%d]", i)
		if !userRe.MatchString(u.Name) {
			v.add(f+".name", "use 1–32 lowercase letters, digits, '_' or '-', starting with a letter or '_'", "bad user name %q", u.Name)
		} else if j, dup := names[u.Name]; dup {
			v.add(f+".name", fmt.Sprintf("merge it with system.users[%d]", j), "user %q is defined twice", u.Name)
		} else {
			names[u.Name] = i
		}
		if u.UID != nil && (*u.UID < 0 || *u.UID > 65533 || (*u.UID == 0) != (u.Name == "root")) {
			v.add(f+".uid", "use 1000–60000 (0 only for root), or leave it out", "bad uid %d", *u.UID)
		}
		v.passwordHash(f+".password_hash", u.PasswordHash)
		for j, k := range u.SSHKeys {
			if err := checkAuthorizedKey(k); err != nil {
				v.add(fmt.Sprintf("%s.ssh_keys[%d]", f, j), `paste one line of a public key file, such as "ssh-ed25519 AAAA… you@host"`, "%v", err)
			}
		}
		for j, p := range u.SSHKeyFiles {
			v.inputFile(fmt.Sprintf("%s.ssh_key_files[%d]", f, j), p, false)
		}
	}
	if w := s.WiFi; w != nil {
		if len(w.SSID) < 1 || len(w.SSID) > 32 {
			v.add("system.wifi.ssid", "give the network name (1–32 bytes)", "SSID of %d bytes", len(w.SSID))
		}
		if !validPSK(w.PSK) {
			// Never echo the PSK itself.
			v.add("system.wifi.psk", "use a passphrase of 8–63 characters or 64 hex digits", "PSK of %d characters is not valid for WPA2", len(w.PSK))
		}
		if w.Country != "" && !countryRe.MatchString(w.Country) {
			v.add("system.wifi.country", `use a two-letter ISO 3166 code such as "DE" or "US"`, "bad country %q", w.Country)
		}
	}
}

// files checks the extra files and overlays.
func (v *validator) files(s System) {
	paths := map[string]int{}
	for i, f := range s.Files {
		fld := fmt.Sprintf("system.files[%d]", i)
		clean := path.Clean("/" + f.Path)
		switch {
		case !strings.HasPrefix(f.Path, "/"):
			v.add(fld+".path", `give the absolute path in the image, such as "/etc/motd"`, "path %q is not absolute", f.Path)
		case clean == "/" || strings.HasSuffix(f.Path, "/"):
			v.add(fld+".path", `give a file path, such as "/etc/motd"`, "path %q is a directory", f.Path)
		case strings.Contains("/"+f.Path+"/", "/../"):
			v.add(fld+".path", "remove the '..' components", "path %q climbs with '..'", f.Path)
		default:
			if j, dup := paths[clean]; dup {
				v.add(fld+".path", fmt.Sprintf("remove one of system.files[%d] and system.files[%d]", j, i), "duplicate path %s", clean)
			} else {
				paths[clean] = i
			}
		}
		switch {
		case f.Source != "" && f.Content != "":
			v.add(fld, "keep only one of them", "both source and content are given")
		case f.Source != "":
			v.inputFile(fld+".source", f.Source, false)
		}
		if f.Mode > 0o7777 {
			v.add(fld+".mode", `write the mode in octal, such as "0644"`, "mode %o has bits beyond 07777", uint32(f.Mode))
		}
	}
	v.overlays("system.overlays", s.Overlays)
}

func (v *validator) overlays(field string, list []string) {
	for i, o := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		full := v.r.Resolve(o)
		fi, err := os.Stat(full)
		if err != nil {
			v.inputFile(f, o, true)
			continue
		}
		switch {
		case !fi.IsDir() && !IsTarball(o):
			v.add(f, "give a directory or a .tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.zst or .tzst file", "overlay %s is neither a directory nor a tarball", o)
		case !fi.IsDir():
			v.inputFile(f, o, false)
		}
	}
}

// IsTarball reports whether name has an extension of a tarball Kiln reads as an overlay.
func IsTarball(name string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tzst"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

func (v *validator) data() {
	d := v.r.Data
	if !fatLabelRe.MatchString(d.Label) {
		v.add("data.label", `use 1–11 uppercase letters, digits, '_' or '-', such as "KILN-DATA"`, "bad FAT label %q", d.Label)
	}
	v.overlays("data.overlays", d.Overlays)
}

func (v *validator) update() {
	u := v.r.Update
	if !channelRe.MatchString(u.Channel) {
		v.add("update.channel", `use lowercase letters, digits, '.', '_' or '-', such as "stable"`, "bad channel %q", u.Channel)
	}
	version, verr := ParseVersion(v.r.Version)
	var lo, hi *Version
	if u.MinFrom != "" {
		if x, err := ParseVersion(u.MinFrom); err != nil {
			v.add("update.min_from", `use MAJOR.MINOR.PATCH such as "1.0.0"`, "%v", err)
		} else {
			lo = &x
		}
	} else {
		v.add("update.min_from", `use "0.0.0" to accept every older version`, "min_from is empty")
	}
	if u.MaxFrom != "" {
		if x, err := ParseVersion(u.MaxFrom); err != nil {
			v.add("update.max_from", `use MAJOR.MINOR.PATCH such as "1.0.0", or "" for any older version`, "%v", err)
		} else {
			hi = &x
		}
	}
	if lo != nil && hi != nil && lo.Compare(*hi) > 0 {
		v.add(v.blame("update.min_from", "update.max_from"), "make min_from ≤ max_from", "min_from %s is above max_from %s", u.MinFrom, u.MaxFrom)
	}
	if verr == nil {
		if lo != nil && lo.Compare(version) > 0 {
			v.add("update.min_from", "make min_from lower than version", "min_from %s is above this version %s: no device could update to it", u.MinFrom, v.r.Version)
		}
		if hi != nil && hi.Compare(version) >= 0 {
			v.add("update.max_from", "make max_from lower than version, or leave it empty", "max_from %s is not below this version %s", u.MaxFrom, v.r.Version)
		}
	}
	if u.Server != "" {
		x, err := url.Parse(u.Server)
		if err != nil || (x.Scheme != "http" && x.Scheme != "https") || x.Host == "" {
			v.add("update.server", `give an http:// or https:// URL such as "http://192.168.1.10:8080", or "" to discover one on the LAN`, "bad server URL %q", u.Server)
		}
	}
	if strings.ContainsAny(u.HealthCheck, "\n\r\x00") {
		v.add("update.health_check", "write the command on one line", "health_check has a line break")
	}
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 64 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !labelRe.MatchString(strings.ToLower(l)) {
			return false
		}
	}
	return true
}

func validPSK(p string) bool {
	if len(p) == 64 {
		_, err := hex.DecodeString(p)
		return err == nil
	}
	if len(p) < 8 || len(p) > 63 {
		return false
	}
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func (v *validator) passwordHash(field, h string) {
	const hint = "make a SHA-512 hash with `mkpasswd -m sha-512` or `openssl passwd -6`"
	switch {
	case h == "", h == "!", h == "*":
		// No password login (locked), keys only.
	case strings.HasPrefix(h, "$y$"), strings.HasPrefix(h, "$gy$"), strings.HasPrefix(h, "$2"), strings.HasPrefix(h, "$7$"):
		v.add(field, hint+" (busybox's login checks only $1$, $5$ and $6$)", "password hash type %s is not supported in the image", h[:strings.IndexByte(h[1:], '$')+2])
	case !strings.HasPrefix(h, "$"):
		v.add(field, hint, "password_hash is not a crypt(3) hash (never put a plain password here)")
	case !cryptRe.MatchString(h):
		v.add(field, hint, "password_hash is not a valid $1$, $5$ or $6$ crypt(3) string")
	}
}

var keyTypes = map[string]bool{
	"ssh-ed25519": true, "ssh-rsa": true, "ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true,
	"ecdsa-sha2-nistp521": true, "sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
	"ssh-dss": true,
}

// checkAuthorizedKey checks one authorized_keys line: [options] type base64 [comment].
func checkAuthorizedKey(line string) error {
	if strings.ContainsAny(line, "\n\r") {
		return fmt.Errorf("key has a line break: give one key per entry")
	}
	f := strings.Fields(line)
	for i, w := range f {
		if !keyTypes[w] {
			continue
		}
		if i+1 >= len(f) {
			return fmt.Errorf("%s key has no key data", w)
		}
		blob, err := base64.StdEncoding.DecodeString(f[i+1])
		if err != nil || len(blob) < 4+len(w) || string(blob[4:4+len(w)]) != w {
			return fmt.Errorf("%s key data is not valid", w)
		}
		return nil
	}
	if strings.Contains(line, "PRIVATE KEY") {
		return fmt.Errorf("this is a private key: give the public key (.pub file)")
	}
	return fmt.Errorf("not an SSH public key (no known key type such as ssh-ed25519)")
}
