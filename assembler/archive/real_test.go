package archive

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
)

// realRequest is the garden-controller set of issue 12.
var realRequest = []string{"python3", "dropbear", "wpasupplicant", "mosquitto"}

// hostBookworm returns the host's apt sources for bookworm and its -updates/-security suites.
func hostBookworm(t testing.TB) []Source {
	t.Helper()
	all, err := HostSources("/")
	if err != nil {
		testenv.Missing(t, "host apt sources: %v", err)
	}
	out := ForSuite(all, "bookworm")
	if len(out) == 0 {
		testenv.Missing(t, "the host's apt sources have no bookworm suite")
	}
	return out
}

// aptRoot is a scratch apt configuration over the same sources, with an empty dpkg status so
// the host's installed packages do not count, and uncompressed lists.
type aptRoot struct {
	dir, apt string
	opts     []string
}

func newAptRoot(t testing.TB, sources []Source) *aptRoot {
	t.Helper()
	r := &aptRoot{dir: t.TempDir(), apt: testenv.Tool(t, "apt-get")}
	var list strings.Builder
	for _, s := range sources {
		fmt.Fprintf(&list, "deb [arch=amd64 signed-by=%s] %s %s %s\n", s.SignedBy, s.URI, s.Suite, strings.Join(s.Components, " "))
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "parts", "prefs", "log"} {
		os.MkdirAll(filepath.Join(r.dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(r.dir, "sources.list"), []byte(list.String()), 0o644)
	os.WriteFile(filepath.Join(r.dir, "status"), nil, 0o644)
	r.opts = []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(r.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(r.dir, "parts"),
		"-o", "Dir::Etc::Parts=" + filepath.Join(r.dir, "parts"),
		"-o", "Dir::Etc::Preferences=" + filepath.Join(r.dir, "prefs", "none"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(r.dir, "prefs"),
		"-o", "Dir::State::Lists=" + filepath.Join(r.dir, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(r.dir, "status"),
		"-o", "Dir::State::extended_states=" + filepath.Join(r.dir, "extended_states"),
		"-o", "Dir::Cache=" + filepath.Join(r.dir, "cache"),
		"-o", "Dir::Log=" + filepath.Join(r.dir, "log"),
		"-o", "APT::Architecture=amd64", "-o", "APT::Architectures=amd64",
		"-o", "Acquire::Languages=none", "-o", "Acquire::GzipIndexes=false",
		"-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=" + currentUser(),
	}
	return r
}

func currentUser() string {
	if os.Getuid() == 0 {
		return "root"
	}
	return os.Getenv("USER")
}

func (r *aptRoot) run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.apt, append(r.opts, args...)...).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var instLine = regexp.MustCompile(`(?m)^Inst (\S+) \((\S+) .*\[(\S+)\]\)`)

// aptSet runs apt-get install --simulate without recommends and returns "name:arch=version".
func (r *aptRoot) simulate(t testing.TB, pkgs []string) []string {
	out := r.run(t, append([]string{"-s", "-q", "--no-install-recommends", "install"}, pkgs...)...)
	var set []string
	for _, m := range instLine.FindAllStringSubmatch(out, -1) {
		set = append(set, m[1]+":"+m[3]+"="+m[2])
	}
	sort.Strings(set)
	return set
}

// goldenDiffs reads a golden file of testdata: one "+name:arch" (only Kiln installs it) or
// "-name:arch" (only apt does) per line, then "#" and the reason.
func goldenDiffs(t *testing.T, file string) map[string]string {
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, why, _ := strings.Cut(line, "#")
		out[strings.TrimSpace(k)] = strings.TrimSpace(why)
	}
	return out
}

// compareSets checks Kiln's set against apt's: every difference must be explained in the golden
// file, and every explanation must still be needed.
func compareSets(t *testing.T, got []*Package, want []string, file string) {
	t.Helper()
	kiln := map[string]string{}
	for _, p := range got {
		kiln[p.Name+":"+p.Arch] = p.Version
	}
	aptSet := map[string]string{}
	for _, e := range want {
		k, v, _ := strings.Cut(e, "=")
		aptSet[k] = v
	}
	golden := goldenDiffs(t, file)
	seen := map[string]bool{}
	for k, v := range kiln {
		av, ok := aptSet[k]
		switch {
		case !ok:
			seen["+"+k] = true
			if _, explained := golden["+"+k]; !explained {
				t.Errorf("Kiln installs %s=%s, apt does not (explain it in testdata/%s or fix the resolver)", k, v, file)
			}
		case av != v:
			t.Errorf("%s: Kiln picks %s, apt %s", k, v, av)
		}
	}
	for k, v := range aptSet {
		if _, ok := kiln[k]; !ok {
			seen["-"+k] = true
			if _, explained := golden["-"+k]; !explained {
				t.Errorf("apt installs %s=%s, Kiln does not (explain it in testdata/%s or fix the resolver)", k, v, file)
			}
		}
	}
	for k := range golden {
		if !seen[k] {
			t.Errorf("testdata/%s explains %s, which is no longer a difference: remove it", file, k)
		}
	}
}

// TestRealArchiveMatchesApt resolves the request against the real archive named by the host's
// apt sources, verified with the host's keyring, and compares the set with what apt-get would
// install from the same sources onto an empty system.
func TestRealArchiveMatchesApt(t *testing.T) {
	if testing.Short() {
		t.Skip("network test; run without -short")
	}
	sources := hostBookworm(t)
	root := newAptRoot(t, sources)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &Client{Sources: sources, Arches: []string{"amd64"}}
	a, err := c.Load(ctx)
	if err != nil {
		if ctx.Err() == nil && strings.Contains(err.Error(), "archive: ") {
			testenv.Missing(t, "mirror unreachable: %v", err)
		}
		t.Fatal(err)
	}
	root.run(t, "update", "-q")
	t0 := time.Now()
	got, err := a.Resolve(realRequest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kilnTime := time.Since(t0)
	t1 := time.Now()
	want := root.simulate(t, realRequest)
	t.Logf("resolved %d packages from %d versions in %v; apt-get --simulate: %d packages in %v", len(got), a.Len(), kilnTime, len(want), time.Since(t1))
	if len(want) < 20 {
		t.Fatalf("apt-get --simulate listed only %d packages: %q", len(want), want)
	}
	compareSets(t, got, want, "apt-differences.txt")

	// What a package image installs: the request on top of the Essential set, on a tree with
	// merged /usr (the assembler's Prefer), against apt installing the Essential set and the
	// request, as mmdebstrap --variant=essential --include=… does.
	got, err = a.Resolve(realRequest, Options{Base: true, Prefer: []string{"usr-is-merged"}})
	if err != nil {
		t.Fatal(err)
	}
	// The Essential packages as mmdebstrap lists them: Essential: yes in the indices (apt's own
	// ?essential also counts apt itself).
	var essential []string
	for _, p := range a.cand {
		if p.Essential && (p.Arch == "amd64" || p.Arch == "all") {
			essential = append(essential, p.Name)
		}
	}
	sort.Strings(essential)
	want = root.simulate(t, append(essential, realRequest...))
	t.Logf("with the Essential base: Kiln %d packages, apt-get --simulate with the %d Essential packages %d", len(got), len(essential), len(want))
	compareSets(t, got, want, "apt-differences-base.txt")
}
