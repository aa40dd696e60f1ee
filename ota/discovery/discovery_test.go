package discovery_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dnslog "github.com/brutella/dnssd/log"

	"github.com/kilnproject/kiln/ota/discovery"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"

	"github.com/kilnproject/kiln/internal/testenv"
)

// need skips the test locally, or fails it under CI=true, when it cannot run.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	testenv.Missing(t, "%v", why)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestBrowseAcrossNamespaces advertises a server in one network namespace and browses for it
// from another, the two joined by a veth pair: as between a desktop and a device on a LAN.
func TestBrowseAcrossNamespaces(t *testing.T) {
	need(t, os.Geteuid() == 0, "needs root to create network namespaces")
	_, err := exec.LookPath("ip")
	need(t, err == nil, "needs the ip command (iproute2)")

	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsB := "kiln-ota-a-"+tag, "kiln-ota-b-"+tag
	run(t, "ip", "netns", "add", nsA)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsA).Run() })
	run(t, "ip", "netns", "add", nsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsB).Run() })
	vA, vB := "kotaa"+tag, "kotab"+tag
	run(t, "ip", "link", "add", vA, "type", "veth", "peer", "name", vB)
	run(t, "ip", "link", "set", vA, "netns", nsA)
	run(t, "ip", "link", "set", vB, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", "10.231.7.1/24", "dev", vA)
	run(t, "ip", "-n", nsB, "addr", "add", "10.231.7.2/24", "dev", vB)
	for _, c := range [][]string{{nsA, vA}, {nsB, vB}} {
		run(t, "ip", "-n", c[0], "link", "set", c[1], "up")
		run(t, "ip", "-n", c[0], "link", "set", "lo", "up")
	}

	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", []byte("payload"), repo.Options{})
	fp, _ := repo.Fingerprint(keys.Root)

	exe, _ := os.Executable()
	adv := exec.Command("ip", "netns", "exec", nsA, exe, "-test.run=^$")
	adv.Env = append(os.Environ(), "KILN_OTA_HELPER=serve", "KILN_OTA_REPO="+dir, "KILN_OTA_ADDR=10.231.7.1:8470")
	stdout, _ := adv.StdoutPipe()
	adv.Stderr = os.Stderr
	if err := adv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adv.Process.Kill(); adv.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening ") {
				ready <- sc.Text()
			}
		}
		close(ready)
	}()
	select {
	case l, ok := <-ready:
		if !ok {
			t.Fatal("server process exited")
		}
		t.Log(l)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}

	browse := func(fingerprint string) (*discovery.Found, error) {
		b := exec.Command("ip", "netns", "exec", nsB, exe, "-test.run=^$")
		b.Env = append(os.Environ(), "KILN_OTA_HELPER=browse", "KILN_OTA_FP="+fingerprint)
		b.Stderr = os.Stderr
		out, err := b.Output()
		if err != nil {
			return nil, fmt.Errorf("browse: %v: %s", err, out)
		}
		var f discovery.Found
		line := string(out)
		if i := strings.Index(line, "{"); i >= 0 {
			line, _, _ = strings.Cut(line[i:], "\n")
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			return nil, fmt.Errorf("browse output %q: %v", out, err)
		}
		return &f, nil
	}
	f, err := browse(fp)
	if err != nil {
		t.Fatal(err)
	}
	if f.URL != "http://10.231.7.1:8470" || f.Fingerprint != fp || f.Protocol != "1" {
		t.Fatalf("found %+v; want http://10.231.7.1:8470 with fingerprint %s", f, fp)
	}
	// A device pinned to another owner's root does not take this server.
	other, _ := repo.Fingerprint(otatest.Keys(t).Root)
	if f, err := browse(other); err == nil {
		t.Fatalf("device with another trust root found %+v", f)
	}
}

// TestMain runs the test binary as the server or the browser of TestBrowseAcrossNamespaces when
// KILN_OTA_HELPER says so (inside a namespace, by `ip netns exec`), and the tests otherwise.
func TestMain(m *testing.M) {
	if role := os.Getenv("KILN_OTA_HELPER"); role != "" {
		os.Exit(helperMain(role))
	}
	os.Exit(m.Run())
}

func helperMain(role string) int {
	if os.Getenv("KILN_OTA_DEBUG") != "" {
		dnslog.Debug.Enable()
	}
	switch role {
	case "serve":
		s, err := server.New(server.Config{Repo: os.Getenv("KILN_OTA_REPO"), Addr: os.Getenv("KILN_OTA_ADDR"), Advertise: true, Name: "Kiln test"})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		if err := s.Start(context.Background()); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("listening", s.URL())
		// Serve until killed, proving the server answers on its address meanwhile.
		resp, err := http.Get(s.URL() + "/v1/info")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(10 * time.Minute)
	case "browse":
		f, err := discovery.Browse(context.Background(), os.Getenv("KILN_OTA_FP"), 8*time.Second)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		resp, err := http.Get(f.URL + "/v1/info")
		if err != nil {
			fmt.Println("error: server not reachable:", err)
			return 1
		}
		resp.Body.Close()
		json.NewEncoder(os.Stdout).Encode(f)
	default:
		fmt.Println("error: unknown helper role", role)
		return 2
	}
	return 0
}
