package assembler_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/internal/testimage"
	"github.com/kilnproject/kiln/vmrunner"
)

// TestBootPackage boots an image with GNU hello from the host's Debian archive — a dynamically
// linked program whose C library comes with it through the resolver — and runs it on the serial
// console; dpkg's status database in the image lists the closure.
func TestBootPackage(t *testing.T) {
	if srcs, err := archive.HostSources("/"); err != nil || len(srcs) == 0 {
		testimage.Missing(t, "the host has no apt sources to take packages from")
	}
	opts := testimage.Options(t)
	debs := filepath.Join(opts.Cache, "debs")
	deb := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(debs, pattern))
		if len(m) == 0 {
			testimage.Missing(t, "no "+pattern+" in "+debs+" (run `make inputs`)")
		}
		return m[len(m)-1]
	}
	dir := t.TempDir()
	// The input packages from the cache by path: only hello and its dependencies come from the
	// archive.
	src := "kiln = 1\nname = \"hello\"\nversion = \"1.0.0\"\n" +
		"[kernel]\npackage = \"" + deb("linux-image-[0-9]*_*.deb") + "\"\n" +
		"[board]\nbootloader = \"" + deb("systemd-boot-efi_*.deb") + "\"\n" +
		"[system]\nbusybox = \"" + deb("busybox-static_*.deb") + "\"\npackages = [\"hello\"]\n" +
		// Services: one that runs once, one that fails and is restarted.
		"[[system.services]]\nname = \"greeter\"\ncommand = \"hello --greeting='from a service'\"\nrestart = \"no\"\n" +
		"[[system.services]]\nname = \"ticker\"\ncommand = \"echo tick >>/run/ticks; exit 3\"\nrestart = \"on-failure\"\n"
	file := filepath.Join(dir, "kiln.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.OutDir = filepath.Join(dir, "out")
	res, err := assembler.Build(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := loadManifest(t, res)
	var names []string
	for _, p := range m.Packages {
		names = append(names, p.Name)
	}
	t.Logf("installed %q", names)

	checkRootLayout(t, res)

	ready := regexp.MustCompile(`kiln: ready name=hello version=1\.0\.0`)
	g := bootVM(t, vmrunner.Config{Image: res.Image, Firmware: vmrunner.FirmwareUEFI, MemoryMiB: 1024})
	g.expect(ready, bootTimeout)
	g.send("\n")
	checkReadOnlyRoot(g)
	g.send(`hello; echo "packages=$(grep -c '^Status: install ok installed' /var/lib/dpkg/status)"` + "\n")
	g.expect(regexp.MustCompile(`\nHello, world!\r?\n`), bootTimeout)
	got := g.expect(regexp.MustCompile(`packages=([0-9]+)\r?\n`), bootTimeout)
	if got[1] != strconv.Itoa(len(m.Packages)) {
		t.Errorf("the image's dpkg status lists %s packages, the manifest %d", got[1], len(m.Packages))
	}
	t.Logf("hello ran %.1fs after boot", time.Since(g.start).Seconds())
	g.send(`sleep 3; echo "ticks=$(wc -l </run/ticks)"; cat /var/log/greeter.log` + "\n")
	ticks := g.expect(regexp.MustCompile(`ticks=([0-9]+)`), bootTimeout)
	if n, _ := strconv.Atoi(ticks[1]); n < 2 {
		t.Errorf("the failing service ran %s times, want it restarted", ticks[1])
	}
	g.expect(regexp.MustCompile(`\nfrom a service\r?\n`), bootTimeout)
	g.expect(regexp.MustCompile(`kiln: service greeter exited with status 0`), bootTimeout)
	g.vm.Stop()

	checkSlots(t, res, ready)
}
