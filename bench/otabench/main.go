// Command otabench drives bench/ota.sh: it serves a repository with Kiln's update server or a
// plain net/http FileServer, downloads from either with N concurrent clients, simulates many
// polling agents, applies a large update with the real agent code, and measures delta sizes.
//
//	otabench publish -repo DIR -size BYTES            publish a random payload of that size
//	otabench serve -repo DIR -kind kiln|fileserver    serve until killed; prints "url URL"
//	otabench get -url URL -n N                        download N copies at once; prints MB/s
//	otabench agents -url URL -n N -d DURATION         N agents polling; prints check latencies
//	otabench apply -repo DIR                          agent installs the newest target; prints peak RSS
//	otabench delta -old DIR -new DIR                  publish two builds; prints full and delta sizes
//	otabench build -recipe FILE -out DIR              build an image ($KILN_CACHE, $KILN_AGENT)
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/agent"
	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: otabench publish|serve|get|agents|apply|delta ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("repo", "", "repository directory")
	size := fs.Int64("size", 512<<20, "payload size")
	version := fs.String("version", "1.0.0", "version to publish")
	kind := fs.String("kind", "kiln", "server: kiln or fileserver")
	url := fs.String("url", "", "file or server URL")
	n := fs.Int("n", 1, "concurrent clients or agents")
	d := fs.Duration("d", 20*time.Second, "duration")
	oldDir := fs.String("old", "", "old build output directory")
	newDir := fs.String("new", "", "new build output directory")
	recipePath := fs.String("recipe", "", "recipe file")
	out := fs.String("out", "", "output directory")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "publish":
		err = publish(ctx, *dir, *version, *size)
	case "serve":
		err = serve(ctx, *dir, *kind)
	case "get":
		err = get(*url, *n)
	case "agents":
		err = agents(ctx, *url, *n, *d)
	case "apply":
		err = apply(ctx, *dir)
	case "delta":
		err = deltaSizes(ctx, *dir, *oldDir, *newDir)
	case "build":
		err = build(ctx, *recipePath, *out)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// publish writes a random payload as an update bundle and publishes it.
func publish(ctx context.Context, dir, version string, size int64) error {
	k, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp("", "otabench-bundle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	name := "bench-" + version + ".efi"
	f, err := os.Create(filepath.Join(out, name))
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		return err
	}
	f.Close()
	b, _ := json.Marshal(ota.Bundle{Name: "bench", Version: version, Arch: "x86_64", Channel: "stable", Payload: ota.Payload{File: name}})
	if err := os.WriteFile(filepath.Join(out, "update.json"), b, 0o644); err != nil {
		return err
	}
	pub, err := repo.Publish(ctx, dir, k, out, repo.Options{NoDeltas: true})
	if err != nil {
		return err
	}
	fmt.Printf("path /%s\n", ota.TargetFile(pub.Target.Path, pub.Target.SHA256))
	return nil
}

func serve(ctx context.Context, dir, kind string) error {
	switch kind {
	case "kiln":
		s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		if err := s.Start(ctx); err != nil {
			return err
		}
		fmt.Printf("url %s\n", s.URL())
		<-ctx.Done()
		return s.Stop(context.Background())
	case "fileserver":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
		go srv.Serve(l)
		fmt.Printf("url http://%s\n", l.Addr())
		<-ctx.Done()
		return srv.Close()
	}
	return fmt.Errorf("unknown server kind %q", kind)
}

// get downloads url n times concurrently and prints the aggregate throughput in MB/s.
func get(url string, n int) error {
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	c := &http.Client{Transport: tr}
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("GET %s: %s", url, resp.Status)
				return
			}
			m, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
			total.Add(m)
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%.1f\n", float64(total.Load())/el/1e6)
	return nil
}

// agents simulates n devices: each checks every second (jittered) and reports now and then.
func agents(ctx context.Context, url string, n int, d time.Duration) error {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxIdleConns: n}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var fails atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dev := ota.Device{ID: fmt.Sprintf("bench-%04d", i), Name: "bench", Version: "0.9.0", Arch: "x86_64", Channel: "stable"}
			body, _ := json.Marshal(ota.CheckRequest{Device: dev})
			rep, _ := json.Marshal(ota.Report{Device: dev, State: ota.StateHealthy})
			time.Sleep(time.Duration(mrand.Int64N(int64(time.Second))))
			for k := 0; ctx.Err() == nil; k++ {
				t0 := time.Now()
				resp, err := c.Post(url+"/v1/check", "application/json", bytes.NewReader(body))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					if ctx.Err() == nil {
						fails.Add(1)
					}
				} else {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
				if k%5 == 0 {
					if resp, err := c.Post(url+"/v1/report", "application/json", bytes.NewReader(rep)); err == nil {
						resp.Body.Close()
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(800+mrand.IntN(400)) * time.Millisecond):
				}
			}
		}(i)
	}
	wg.Wait()
	if len(lat) == 0 {
		return fmt.Errorf("no successful checks (%d failures)", fails.Load())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 {
		return float64(lat[int(math.Min(float64(len(lat)-1), q*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("checks %d failures %d rate %.0f/s p50 %.2f p99 %.2f max %.2f\n", len(lat), fails.Load(),
		float64(len(lat))/d.Seconds(), p(0.5), p(0.99), p(1))
	return nil
}

// apply runs the real agent code (verify, download, write the boot entry) against a server
// for the repository's newest target, on a simulated ESP in a temporary directory, and prints
// the process's peak RSS.
func apply(ctx context.Context, dir string) error {
	k, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	s, err := server.New(server.Config{Repo: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	defer s.Stop(context.Background())
	dev, err := os.MkdirTemp(filepath.Dir(dir), "otabench-device-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dev)
	linux := filepath.Join(dev, "esp", "EFI", "Linux")
	os.MkdirAll(linux, 0o755)
	os.WriteFile(filepath.Join(linux, "bench-0.9.0.efi"), []byte("old"), 0o644)
	rel, _ := json.Marshal(agent.Release{Name: "bench", Version: "0.9.0", Arch: "x86_64", Channel: "stable", Server: s.URL()})
	os.WriteFile(filepath.Join(dev, "release.json"), rel, 0o644)
	os.WriteFile(filepath.Join(dev, "root.json"), k.Root, 0o644)
	l := logrus.New()
	l.SetOutput(io.Discard)
	rebooted := false
	a, err := agent.New(agent.Config{Release: filepath.Join(dev, "release.json"), Root: filepath.Join(dev, "root.json"),
		ESP: filepath.Join(dev, "esp"), State: filepath.Join(dev, "data", "kiln", "ota"), EFIVars: filepath.Join(dev, "efivars"),
		Reboot: func(context.Context) error { rebooted = true; return nil }, Log: l})
	if err != nil {
		return err
	}
	t0 := time.Now()
	a.Assess(ctx)
	if err := a.CheckAndInstall(ctx); !rebooted {
		return fmt.Errorf("no install: %v", err)
	}
	el := time.Since(t0)
	des, _ := os.ReadDir(linux)
	var names []string
	var size int64
	for _, de := range des {
		fi, _ := de.Info()
		names = append(names, de.Name())
		size = max(size, fi.Size())
	}
	fmt.Printf("installed %s (%d MiB) in %.1fs peak_rss_kib %d\n", strings.Join(names, ","), size>>20, el.Seconds(), peakRSS())
	return nil
}

func peakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%d", &kb)
			return kb
		}
	}
	return -1
}

// deltaSizes publishes two builds into dir and prints the full size and the delta size.
func deltaSizes(ctx context.Context, dir, oldOut, newOut string) error {
	k, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	if _, err := repo.Publish(ctx, dir, k, oldOut, repo.Options{NoDeltas: true}); err != nil {
		return err
	}
	pub, err := repo.Publish(ctx, dir, k, newOut, repo.Options{})
	if err != nil {
		return err
	}
	if len(pub.Deltas) == 0 {
		fmt.Printf("full %d delta none\n", pub.Target.Size)
		return nil
	}
	fmt.Printf("full %d delta %d\n", pub.Target.Size, pub.Deltas[0].Size)
	return nil
}

func build(ctx context.Context, recipePath, out string) error {
	r, err := recipe.Load(recipePath)
	if err != nil {
		return err
	}
	k, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	res, err := assembler.Build(ctx, r, assembler.Options{OutDir: out, Cache: os.Getenv("KILN_CACHE"),
		Agent: os.Getenv("KILN_AGENT"), TrustedRoot: k.Root, SourceDateEpoch: 1704067200})
	if err != nil {
		return err
	}
	fmt.Printf("uki %s\n", res.UKI)
	return nil
}
