// Package packaging holds the release tooling (build.sh, the icon renderer); its test builds the
// Linux packages and installs them into a temporary root.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/internal/testenv"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed", tool)
		}
	}
}

// make package's artifacts install into a root and hold the program, the device agent, the
// desktop entry, the icon and the polkit policy.
func TestPackagesInstall(t *testing.T) {
	bin, agent := os.Getenv("KILN_BIN"), os.Getenv("KILN_AGENT")
	if bin == "" || agent == "" {
		testenv.Missing(t, "KILN_BIN/KILN_AGENT not set: run through make test")
	}
	need(t, "dpkg-deb", "tar", "xz")
	dist := t.TempDir()
	cmd := exec.Command("bash", "build.sh", "v1.2.3-4-gabcdef", dist)
	cmd.Env = append(os.Environ(), "KILN_BIN="+bin, "KILN_AGENT="+agent, "KILN_XZ_LEVEL=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "kiln_1.2.3+4.gabcdef_*.deb"))
	tars, _ := filepath.Glob(filepath.Join(dist, "kiln-1.2.3+4.gabcdef-linux-*.tar.xz"))
	if len(debs) != 1 || len(tars) != 1 {
		entries, _ := os.ReadDir(dist)
		t.Fatalf("want one .deb and one .tar.xz, got %v", entries)
	}

	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/bin/kiln", "usr/bin/kiln-agent",
		"usr/share/applications/org.kilnproject.kiln.desktop",
		"usr/share/icons/hicolor/512x512/apps/org.kilnproject.kiln.png",
		"usr/share/polkit-1/actions/org.kilnproject.kiln.flash-helper.policy"} {
		if st, err := os.Stat(filepath.Join(root, f)); err != nil || st.Size() == 0 {
			t.Errorf(".deb lacks %s", f)
		}
	}
	desktop, _ := os.ReadFile(filepath.Join(root, "usr/share/applications/org.kilnproject.kiln.desktop"))
	for _, want := range []string{"Exec=/usr/bin/kiln", "Icon=org.kilnproject.kiln", "Name=Kiln", "Type=Application"} {
		if !strings.Contains(string(desktop), want) {
			t.Errorf("desktop entry lacks %q:\n%s", want, desktop)
		}
	}
	if _, err := exec.LookPath("desktop-file-validate"); err == nil {
		if out, err := exec.Command("desktop-file-validate", filepath.Join(root, "usr/share/applications/org.kilnproject.kiln.desktop")).CombinedOutput(); err != nil {
			t.Errorf("desktop-file-validate: %v\n%s", err, out)
		}
	}
	info, err := exec.Command("dpkg-deb", "-f", debs[0], "Package", "Version", "Depends").Output()
	if err != nil || !strings.Contains(string(info), "Package: kiln") || !strings.Contains(string(info), "libc6") {
		t.Errorf("control fields: %s %v", info, err)
	}
	// The installed program runs.
	out, err := exec.Command(filepath.Join(root, "usr/bin/kiln"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kiln ") {
		t.Errorf("installed kiln version: %v %q", err, out)
	}

	troot := t.TempDir()
	if out, err := exec.Command("tar", "-C", troot, "-xJf", tars[0]).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	// `make install` from the tarball into a DESTDIR, the way a user installs it.
	dest := t.TempDir()
	if out, err := exec.Command("make", "-C", filepath.Join(troot, "kiln"), "install", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/kiln", "usr/local/bin/kiln-agent",
		"usr/local/share/applications/org.kilnproject.kiln.desktop", "usr/local/share/pixmaps/org.kilnproject.kiln.png",
		"usr/share/polkit-1/actions/org.kilnproject.kiln.flash-helper.policy"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("tarball install lacks %s", f)
		}
	}
}
