package assembler_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assembler/uki"
	"github.com/kilnproject/kiln/internal/testimage"
)

// The default image is built once and shared by the tests that only read it.
var defaultOnce struct {
	sync.Mutex
	res *assembler.Result
	dir string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if defaultOnce.dir != "" {
		os.RemoveAll(defaultOnce.dir)
	}
	os.Exit(code)
}

// defaultImage returns the built default image (Kiln Tiny), building it on first use.
func defaultImage(t *testing.T) *assembler.Result {
	t.Helper()
	defaultOnce.Lock()
	defer defaultOnce.Unlock()
	if defaultOnce.res != nil {
		return defaultOnce.res
	}
	opts := testimage.Options(t)
	dir, err := os.MkdirTemp("", "kiln-default-image-")
	if err != nil {
		t.Fatal(err)
	}
	defaultOnce.dir = dir
	opts.OutDir = filepath.Join(dir, "out")
	res, err := assembler.Build(t.Context(), defaultRecipe(), opts)
	if err != nil {
		t.Fatalf("build default image: %v", err)
	}
	defaultOnce.res = res
	return res
}

func defaultRecipe() *recipe.Recipe { return recipe.Default() }

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testimage.Missing(t, fmt.Sprintf("%s not installed (apt-get install %s)", name, pkg))
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func loadManifest(t *testing.T, res *assembler.Result) *assembler.Manifest {
	t.Helper()
	m, err := assembler.LoadManifest(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestImageGPT(t *testing.T) {
	needTool(t, "sgdisk", "gdisk")
	res := defaultImage(t)
	m := loadManifest(t, res)
	out := run(t, "sgdisk", "-v", res.Image)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", res.Image, out)
	}
	// The partition table says what the manifest says.
	out = run(t, "sgdisk", "-p", res.Image)
	if !strings.Contains(strings.ToUpper(out), "DISK IDENTIFIER (GUID): "+strings.ToUpper(m.Image.DiskGUID)) {
		t.Errorf("disk GUID %s not in sgdisk -p:\n%s", m.Image.DiskGUID, out)
	}
	if len(m.Partitions) != 2 {
		t.Fatalf("manifest lists %d partitions, want 2 (ESP, data)", len(m.Partitions))
	}
	for i, p := range m.Partitions {
		info := run(t, "sgdisk", "-i", fmt.Sprint(i+1), res.Image)
		wantType := map[string]string{"esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "data": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"}[p.Type]
		for _, want := range []string{
			"Partition GUID code: " + wantType,
			"Partition unique GUID: " + strings.ToUpper(p.GUID),
			fmt.Sprintf("First sector: %d ", p.Offset/512),
			fmt.Sprintf("Last sector: %d ", (p.Offset+p.Size)/512-1),
			"Partition name: '" + p.Name + "'",
		} {
			if !strings.Contains(info, want) {
				t.Errorf("partition %d: %q not in sgdisk -i:\n%s", i+1, want, info)
			}
		}
	}
	if st, err := os.Stat(res.Image); err != nil || st.Size() != m.Image.Size || res.ImageSize != m.Image.Size {
		t.Errorf("image size: stat %v, manifest %d, result %d", st, m.Image.Size, res.ImageSize)
	}
	if got := testimage.SHA256(t, res.Image); got != m.Image.SHA256 || got != res.ImageSHA256 {
		t.Errorf("image sha256 %s, manifest %s, result %s", got, m.Image.SHA256, res.ImageSHA256)
	}
}

// extract copies a partition of the image into its own sparse file (fsck.vfat wants a device or a
// file) and checks the manifest's sha256 of it on the way.
func extract(t *testing.T, image string, p assembler.Partition) string {
	t.Helper()
	src, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), p.Name+".img")
	dst, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < p.Size; off += int64(len(buf)) {
		n := min(int64(len(buf)), p.Size-off)
		if _, err := src.ReadAt(buf[:n], p.Offset+off); err != nil {
			t.Fatal(err)
		}
		h.Write(buf[:n])
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := dst.Truncate(p.Size); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		t.Errorf("partition %s: sha256 %s, manifest says %s", p.Name, got, p.SHA256)
	}
	return path
}

func TestImageFATClean(t *testing.T) {
	needTool(t, "fsck.vfat", "dosfstools")
	res := defaultImage(t)
	for _, p := range loadManifest(t, res).Partitions {
		t.Run(p.Name, func(t *testing.T) {
			part := extract(t, res.Image, p)
			out, err := exec.Command("fsck.vfat", "-n", "-v", part).CombinedOutput()
			if err != nil {
				t.Fatalf("fsck.vfat -n %s: %v\n%s", p.Name, err, out)
			}
			for _, l := range strings.Split(string(out), "\n") {
				ll := strings.ToLower(l)
				if strings.Contains(ll, "warning") || strings.Contains(ll, "differ") || strings.Contains(ll, "error") || strings.Contains(ll, "invalid") {
					t.Errorf("fsck.vfat -n %s: %s", p.Name, l)
				}
			}
		})
	}
}

// TestImageFiles reads every file of the ESP and the data partition back with mtools, and every
// file of the initramfs with cpio, and compares them with the manifest, in both directions: every
// file the manifest lists is there with its sha256, and nothing unlisted is.
func TestImageFiles(t *testing.T) {
	needTool(t, "mcopy", "mtools")
	needTool(t, "cpio", "cpio")
	res := defaultImage(t)
	m := loadManifest(t, res)
	listed := map[string]assembler.PlacedFile{}
	for _, f := range m.Files {
		listed[f.Path] = f
	}
	seen := map[string]bool{}
	for _, p := range m.Partitions {
		where := p.Type // esp: or data:
		img := fmt.Sprintf("%s@@%d", res.Image, p.Offset)
		// mdir -b lists every file and directory below the root, one per line; on an empty volume
		// it prints nothing and exits 1.
		outb, err := exec.Command("mdir", "-i", img, "-/", "-b", "::").CombinedOutput()
		out := string(outb)
		if err != nil {
			if !strings.Contains(out, `"::" not found`) {
				t.Fatalf("mdir %s: %v\n%s", img, err, out)
			}
			out = ""
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasSuffix(line, "/") {
				continue
			}
			name := strings.TrimPrefix(line, "::")
			key := where + ":" + name
			f, ok := listed[key]
			if !ok {
				// mdir -b lists directories without a trailing slash too: skip those.
				if _, err := exec.Command("mdir", "-i", img, "::"+name+"/").CombinedOutput(); err == nil {
					continue
				}
				t.Errorf("%s is in the image but not in the manifest", key)
				continue
			}
			seen[key] = true
			data, err := exec.Command("mcopy", "-n", "-i", img, "::"+name, "-").Output()
			if err != nil {
				t.Errorf("mcopy %s: %v", key, err)
				continue
			}
			if got := sha256Hex(data); got != f.SHA256 || int64(len(data)) != f.Size {
				t.Errorf("%s: read back %d bytes sha256 %s, manifest says %d bytes %s", key, len(data), got, f.Size, f.SHA256)
			}
		}
	}

	// The initramfs: the UKI's .initrd section, unpacked by GNU cpio.
	ukiData, err := os.ReadFile(res.UKI)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hex(ukiData); got != m.UKI.SHA256 {
		t.Errorf("UKI sha256 %s, manifest %s", got, m.UKI.SHA256)
	}
	secs, err := uki.Sections(ukiData)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.UKI.Sections {
		sec, ok := uki.Find(secs, s.Name)
		if !ok || sha256Hex(sec.Data) != s.SHA256 || int64(len(sec.Data)) != s.Size {
			t.Errorf("UKI section %s does not match the manifest", s.Name)
		}
	}
	initrd, ok := uki.Find(secs, ".initrd")
	if !ok {
		t.Fatal("UKI has no .initrd section")
	}
	root := unpackInitramfs(t, initrd.Data)
	// What the device agent reads about its image, boot tries included.
	var rel assembler.Release
	if b, err := os.ReadFile(filepath.Join(root, "etc/kiln/release.json")); err != nil || json.Unmarshal(b, &rel) != nil {
		t.Fatalf("release.json: %v", err)
	}
	if rel != (assembler.Release{Name: "kiln-tiny", Version: "1.0.0", Arch: "x86_64", Board: "x86_64-uefi", Channel: "stable", BootTries: 3}) {
		t.Errorf("release.json = %+v", rel)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		key := "initramfs:/" + filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			return nil
		}
		f, ok := listed[key]
		if !ok {
			t.Errorf("%s is in the initramfs but not in the manifest", key)
			return nil
		}
		seen[key] = true
		if info.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if target != f.Target {
				t.Errorf("%s: symlink to %q, manifest says %q", key, target, f.Target)
			}
			return nil
		}
		if got := testimage.SHA256(t, path); got != f.SHA256 {
			t.Errorf("%s: sha256 %s, manifest says %s", key, got, f.SHA256)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checked %d files of the manifest against the image", len(seen))
	var missing []string
	for k := range listed {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("manifest lists %s but it is not in the image", k)
	}
	for _, want := range []string{"esp:/EFI/BOOT/BOOTX64.EFI", "esp:/loader/loader.conf", "esp:/EFI/Linux/kiln-tiny-1.0.0.efi",
		"initramfs:/init", "initramfs:/usr/bin/kiln-agent", "initramfs:/etc/kiln/release.json", "initramfs:/etc/os-release"} {
		if !seen[want] {
			t.Errorf("image lacks %s", want)
		}
	}
}

// unpackInitramfs decompresses an initramfs with the matching command-line tool and unpacks it
// with GNU cpio into a temporary directory.
func unpackInitramfs(t *testing.T, data []byte) string {
	t.Helper()
	var dec []string
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		dec = []string{"gzip", "-dc"}
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		dec = []string{"zstd", "-dc"}
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z'}):
		dec = []string{"xz", "-dc"}
	case bytes.HasPrefix(data, []byte("070701")):
		dec = []string{"cat"}
	default:
		t.Fatalf("initramfs: unknown compression (starts % x)", data[:min(8, len(data))])
	}
	needTool(t, dec[0], dec[0])
	decomp := exec.Command(dec[0], dec[1:]...)
	decomp.Stdin = bytes.NewReader(data)
	raw, err := decomp.Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(dec, " "), err)
	}
	dir := filepath.Join(t.TempDir(), "initramfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-i", "-d", "-m", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil && os.Geteuid() == 0 {
		t.Fatalf("cpio -i: %v\n%s", err, stderr.String())
	}
	return dir
}

// scanLines returns the non-empty lines of s.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
