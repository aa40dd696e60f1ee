package assembler

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kilnproject/kiln/assembler/fat"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assets"
)

// builtinRecipe is the manifest's name for the built-in default recipe.
const builtinRecipe = "builtin:kiln.toml"

// recordRecipe records the recipe's path and checksum: of the file it was read from, of the
// built-in default, or (for a recipe built in memory) of its canonical encoding.
func (b *builder) recordRecipe() error {
	r := b.r
	ref := RecipeRef{Path: r.Path}
	var data []byte
	var err error
	switch {
	case r.Path == "":
		ref.Path, data = builtinRecipe, assets.DefaultRecipe
	default:
		if data, err = os.ReadFile(r.Path); err != nil {
			if data, err = r.Marshal(); err != nil {
				return err
			}
		}
	}
	ref.SHA256 = sha256Hex(data)
	b.manifest.Recipe = ref
	return nil
}

// Limits on what a recipe adds to an image. A file may be no larger than the partition it goes
// into and all of them together no larger than the disk; the tree holds at most maxEntries
// entries and an SSH key file at most maxKeyFile bytes.
const (
	maxEntries = 1 << 17
	maxKeyFile = 1 << 20
)

// readRecipeFiles reads what the recipe adds to the image: users' SSH key files, extra files,
// root filesystem overlays and the data partition's overlays. Only regular files are read, each
// within the limits above; an error names the recipe line of the input.
func (b *builder) readRecipeFiles(ctx context.Context) error {
	r, in := b.r, &b.inputs
	for i, u := range r.System.Users {
		iu := initramfs.User{Name: u.Name, UID: -1, PasswordHash: u.PasswordHash, SSHKeys: append([]string(nil), u.SSHKeys...)}
		if u.UID != nil {
			iu.UID = *u.UID
		}
		for j, kf := range u.SSHKeyFiles {
			field := fmt.Sprintf("system.users[%d].ssh_key_files[%d]", i, j)
			data, err := b.readSource(field, kf, maxKeyFile)
			if err != nil {
				return err
			}
			in.record(Input{Role: "ssh-keys", Path: kf, Size: int64(len(data)), SHA256: sha256Hex(data)})
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
					iu.SSHKeys = append(iu.SSHKeys, l)
				}
			}
		}
		in.users = append(in.users, iu)
	}

	// Overlays first, then the recipe's files, which win over them.
	layout := r.Board.Layout()
	t := fstree.New()
	t.Replace, t.AllowDevices = true, r.System.AllowDevices
	t.Limits = fstree.Limits{File: layout.ESPSize, Total: layout.DiskSize, Entries: maxEntries}
	if err := b.addOverlays(ctx, t, "system.overlays", r.System.Overlays); err != nil {
		return err
	}
	for _, n := range t.Sorted() {
		if n.Path == "" {
			continue
		}
		in.extra = append(in.extra, initramfs.File{Path: n.Path, Mode: n.Mode, Data: n.Data, Target: n.Target,
			Major: n.Major, Minor: n.Minor, UID: uint32(n.UID), GID: uint32(n.GID), Origin: n.Origin})
	}
	used := t.Size()
	for i, f := range r.System.Files {
		mode := fs.FileMode(f.Mode)
		if mode == 0 {
			mode = 0o644
		}
		origin := fmt.Sprintf("recipe:system.files[%d]", i)
		data := []byte(f.Content)
		if f.Source != "" {
			var err error
			if data, err = b.readSource(fmt.Sprintf("system.files[%d].source", i), f.Source, min(layout.ESPSize, layout.DiskSize-used)); err != nil {
				return err
			}
			origin = "file:" + f.Source
			in.record(Input{Role: "file", Path: f.Source, Size: int64(len(data)), SHA256: sha256Hex(data)})
		}
		used += int64(len(data))
		in.extra = append(in.extra, initramfs.File{Path: f.Path, Mode: mode.Perm(), Data: data, Origin: origin})
	}

	if len(r.Data.Overlays) > 0 {
		t := fstree.New()
		t.Replace = true
		t.Limits = fstree.Limits{File: layout.DataSize, Total: max(0, min(layout.DataSize, layout.DiskSize-used)), Entries: maxEntries}
		if err := b.addOverlays(ctx, t, "data.overlays", r.Data.Overlays); err != nil {
			return err
		}
		for _, n := range t.Sorted() {
			switch {
			case n.Path == "":
			case n.IsDir():
				in.data = append(in.data, fat.File{Path: n.Path, Dir: true})
			case n.IsRegular():
				in.data = append(in.data, fat.File{Path: n.Path, Data: n.Data})
			default:
				return fmt.Errorf("data.overlays: %s (from %s): the data partition is FAT32 and holds only files and directories",
					n.Path, n.Origin)
			}
		}
		for _, f := range in.data {
			if pf, ok := placed("data:", f.Path, fileMode(f.Dir), f.Data, "", t.Get(f.Path).Origin); ok {
				b.manifest.Files = append(b.manifest.Files, pf)
			}
		}
	}
	return nil
}

// readSource reads the regular file a recipe field names, at most limit bytes.
func (b *builder) readSource(field, p string, limit int64) ([]byte, error) {
	full := b.r.Resolve(p)
	b.warnPrivate(field, p, full)
	data, err := fstree.ReadFile(full, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.r.Pos(field), err)
	}
	return data, nil
}

// warnPrivate warns when an input lies outside the recipe's directory and not everyone may read
// it: /etc/shadow or a private key copied into an image by a mistyped path.
func (b *builder) warnPrivate(field, p, full string) {
	if b.r.Dir != "" {
		if rel, err := filepath.Rel(b.r.Dir, full); err == nil && filepath.IsLocal(rel) {
			return
		}
	}
	fi, err := os.Stat(full)
	if err != nil || fi.Mode().Perm()&0o004 != 0 {
		return
	}
	b.warn(fmt.Sprintf("%s: %s lies outside the recipe's folder and is not readable by everyone (mode %04o); "+
		"the image will hold a copy, readable by whoever has the image: make sure it belongs there",
		b.r.Pos(field), p, uint32(fi.Mode().Perm())))
}

// addOverlays merges overlay directories and tarballs into t and records each as an input.
func (b *builder) addOverlays(ctx context.Context, t *fstree.Tree, field string, list []string) error {
	for i, o := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		p := b.r.Resolve(o)
		b.warnPrivate(f, o, p)
		origin := "overlay:" + o
		var err error
		in := Input{Role: "overlay", Path: o}
		if recipe.IsTarball(o) {
			err = t.AddTarball(p, "", origin)
			if err == nil {
				in.Size, in.SHA256, err = hashFile(p)
			}
		} else {
			err = t.AddOverlayDir(p, "", origin)
			if err == nil {
				in.Size, in.SHA256 = treeDigest(t, origin)
			}
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", b.r.Pos(f), o, err)
		}
		b.inputs.record(in)
	}
	return nil
}

// hashFile returns the size and sha256 of the file at p, read as a stream.
func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// treeDigest summarises the nodes of t that came from origin: the sha256 of a sorted listing of
// their paths, modes, link targets and content checksums, and their total size.
func treeDigest(t *fstree.Tree, origin string) (int64, string) {
	h := sha256.New()
	var size int64
	for _, n := range t.Sorted() {
		if !strings.HasPrefix(n.Origin, origin) {
			continue
		}
		sum := sha256.Sum256(n.Data)
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00%s\n", n.Path, uint32(n.Mode), n.Target, hex.EncodeToString(sum[:]))
		size += int64(len(n.Data))
	}
	return size, hex.EncodeToString(h.Sum(nil))
}

// osRelease is the image's os-release(5): /etc/os-release and the UKI's .osrel section, from which
// systemd-boot takes the menu title and orders versions (IMAGE_ID, IMAGE_VERSION).
func osRelease(r *recipe.Recipe) []byte {
	pretty := r.Description
	if pretty == "" {
		pretty = r.Name
	}
	if i := strings.IndexAny(pretty, ":"); i > 0 {
		pretty = pretty[:i]
	}
	var b strings.Builder
	for _, kv := range [][2]string{
		{"NAME", r.Name}, {"ID", r.Name}, {"PRETTY_NAME", pretty + " " + r.Version},
		{"VERSION", r.Version}, {"VERSION_ID", r.Version},
		{"IMAGE_ID", r.Name}, {"IMAGE_VERSION", r.Version},
		{"HOME_URL", "https://github.com/kilnproject/kiln"},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], osrelQuote(kv[1]))
	}
	return []byte(b.String())
}

// osrelQuote quotes a value for os-release (shell-compatible double quotes).
func osrelQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}

// Release is /etc/kiln/release.json: what the device agent knows about the image it runs.
type Release struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Arch        string `json:"arch"`
	Board       string `json:"board"` // as in the update bundle: the OTA server offers a device only its board's updates
	Channel     string `json:"channel"`
	Server      string `json:"server"`
	HealthCheck string `json:"health_check"`
	BootTries   int    `json:"boot_tries"` // tries an update gets before systemd-boot falls back
}

func releaseJSON(r *recipe.Recipe) ([]byte, error) {
	data, err := json.MarshalIndent(Release{Name: r.Name, Version: r.Version, Arch: r.Arch, Board: Board(r), Channel: r.Update.Channel,
		Server: r.Update.Server, HealthCheck: r.Update.HealthCheck, BootTries: r.Board.BootTries}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode release.json: %w", err)
	}
	return append(data, '\n'), nil
}

// placed describes a regular file or symlink for the manifest; other entries are not listed.
func placed(where, path string, mode fs.FileMode, data []byte, target, origin string) (PlacedFile, bool) {
	path = "/" + strings.TrimPrefix(path, "/")
	switch {
	case mode&fs.ModeSymlink != 0:
		return PlacedFile{Path: where + path, Mode: fmt.Sprintf("%04o", mode.Perm()), Size: int64(len(target)),
			Target: target, Origin: origin}, true
	case mode.IsRegular():
		return PlacedFile{Path: where + path, Mode: fmt.Sprintf("%04o", mode.Perm()), Size: int64(len(data)),
			SHA256: sha256Hex(data), Origin: origin}, true
	}
	return PlacedFile{}, false
}

func fileMode(dir bool) fs.FileMode {
	if dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

func sortInputs(in []Input, order map[string]int) {
	sort.SliceStable(in, func(i, j int) bool {
		oi, oki := order[in[i].Role]
		oj, okj := order[in[j].Role]
		switch {
		case oki != okj:
			return oki
		case oi != oj:
			return oi < oj
		case in[i].Role != in[j].Role:
			return in[i].Role < in[j].Role
		}
		return in[i].Path < in[j].Path
	})
}
