// Command fleetbench drives bench/fleet.sh: simulated devices, each with its own key and
// address, checking and reporting (signed) against one or more `kiln serve` processes.
//
//	fleetbench publish -repo DIR                  publish two small versions of "bench"
//	fleetbench agents -url URL[,URL] -n N -every D -d DURATION
//
// The servers run with --proxy 127.0.0.1, and each device names its own address in X-Real-IP
// (10.x.y.z), as a load balancer would: the servers' budgets of new devices are per address.
// agents first registers every device (one check each), then lets them all poll for DURATION:
// each checks every D (±10%) and reports every fifth check. It prints one line of figures.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/repo"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: fleetbench publish|agents …")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("repo", "", "repository")
	urls := fs.String("url", "", "server URLs, comma-separated (requests go round-robin)")
	n := fs.Int("n", 10000, "devices")
	every := fs.Duration("every", 10*time.Second, "check interval of each device")
	d := fs.Duration("d", 30*time.Second, "how long the devices poll")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "publish":
		err = publish(ctx, *dir)
	case "agents":
		err = agents(ctx, strings.Split(*urls, ","), *n, *every, *d)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

func publish(ctx context.Context, dir string) error {
	keys, err := repo.OwnerKeys()
	if err != nil {
		return err
	}
	for i, v := range []string{"1.0.0", "1.1.0"} {
		out, err := os.MkdirTemp("", "fleetbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(out)
		upd := filepath.Join(out, "update")
		payload := bytes.Repeat([]byte{byte(i + 1)}, 64<<10)
		os.MkdirAll(upd, 0o755)
		file := "bench-" + v + ".efi"
		if err := os.WriteFile(filepath.Join(upd, file), payload, 0o644); err != nil {
			return err
		}
		b, _ := json.Marshal(ota.Bundle{Name: "bench", Version: v, Arch: "x86_64", Channel: "stable", MinFrom: "0.0.0",
			Payload: ota.Payload{File: file, Size: int64(len(payload))}})
		if err := os.WriteFile(filepath.Join(upd, ota.BundleFile), b, 0o644); err != nil {
			return err
		}
		if _, err := repo.Publish(ctx, dir, keys, out, repo.Options{NoDeltas: true}); err != nil {
			return err
		}
	}
	return nil
}

type device struct {
	key  ed25519.PrivateKey
	dev  ota.Device
	addr string
}

// stats collects the latencies of one kind of request.
type stats struct {
	mu    sync.Mutex
	lat   []time.Duration
	fails atomic.Int64
}

func (s *stats) add(d time.Duration) {
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
}

// summary is "N ok, F failed, R/s, p50 X ms, p99 Y ms".
func (s *stats) summary(over time.Duration) string {
	slices.Sort(s.lat)
	p := func(q float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}
		return float64(s.lat[int(math.Min(float64(len(s.lat)-1), q*float64(len(s.lat))))].Microseconds()) / 1000
	}
	return fmt.Sprintf("ok %d failed %d rate %.0f/s p50 %.2f p99 %.2f", len(s.lat), s.fails.Load(),
		float64(len(s.lat))/over.Seconds(), p(0.5), p(0.99))
}

func agents(ctx context.Context, urls []string, n int, every, d time.Duration) error {
	// At most 128 requests in flight per server: an overloaded server shows as latency.
	c := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128},
		Timeout: 30 * time.Second}
	devs := make([]*device, n)
	for i := range devs {
		pub, key, _ := ed25519.GenerateKey(nil)
		devs[i] = &device{key: key, addr: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			dev: ota.Device{ID: ota.DeviceID("bench", pub), Key: ota.KeyString(pub), Name: "bench", Version: "1.0.0",
				Arch: "x86_64", Channel: "stable"}}
	}
	var rr atomic.Uint64
	post := func(ctx context.Context, dv *device, path string, v any) (time.Duration, error) {
		body, _ := json.Marshal(v)
		url := urls[rr.Add(1)%uint64(len(urls))]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+path, bytes.NewReader(body))
		req.Header.Set(ota.SignatureHeader, ota.SignRequest(dv.key, path, body, time.Now(), ota.NewNonce()))
		req.Header.Set("X-Real-IP", dv.addr)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return 0, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return time.Since(t0), nil
	}

	// Registration: every device's first check, 64 at a time.
	var reg stats
	var firstErr atomic.Value
	var retries atomic.Int64
	t0 := time.Now()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, dv := range devs {
		sem <- struct{}{}
		wg.Add(1)
		go func(dv *device) {
			defer func() { <-sem; wg.Done() }()
			// A new device the server turns away for now (429: too many new devices at once)
			// comes back a second later, as an agent would.
			for try := 0; ; try++ {
				lat, err := post(ctx, dv, "/v1/check", ota.CheckRequest{Device: dv.dev})
				if err == nil {
					reg.add(lat)
					return
				}
				if !strings.Contains(err.Error(), "429") || try == 60 || ctx.Err() != nil {
					reg.fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				retries.Add(1)
				time.Sleep(time.Second)
			}
		}(dv)
	}
	wg.Wait()
	regTime := time.Since(t0)

	// Steady state: every device polls.
	var checks, reports stats
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for _, dv := range devs {
		wg.Add(1)
		go func(dv *device) {
			defer wg.Done()
			wait := func(d time.Duration) bool {
				select {
				case <-pctx.Done():
					return false
				case <-time.After(d):
					return true
				}
			}
			if !wait(time.Duration(mrand.Int64N(int64(every)))) {
				return
			}
			for k := 0; ; k++ {
				lat, err := post(pctx, dv, "/v1/check", ota.CheckRequest{Device: dv.dev})
				if pctx.Err() != nil {
					return
				}
				if err != nil {
					checks.fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					checks.add(lat)
				}
				if k%5 == 0 {
					st := []string{ota.StateDownloading, ota.StateInstalled, ota.StateHealthy}[k/5%3]
					lat, err := post(pctx, dv, "/v1/report", ota.Report{Device: dv.dev, State: st, Target: "1.1.0"})
					if pctx.Err() != nil {
						return
					}
					if err != nil {
						reports.fails.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					} else {
						reports.add(lat)
					}
				}
				jitter := time.Duration(float64(every) * (0.9 + 0.2*mrand.Float64()))
				if !wait(jitter) {
					return
				}
			}
		}(dv)
	}
	wg.Wait()
	fmt.Printf("devices %d register %.1fs [%s] checks [%s] reports [%s] retries_429 %d", n, regTime.Seconds(),
		reg.summary(regTime), checks.summary(d), reports.summary(d), retries.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" first_error %q", e)
	}
	fmt.Println()
	return nil
}
