package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnproject/kiln/internal/testenv"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/fleet"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/internal/pgtest"
	"github.com/kilnproject/kiln/ota/repo"
)

// startServe starts `kiln serve` on a free loopback port and returns its URL and process.
func startServe(ctx context.Context, t *testing.T, kiln string, args ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.CommandContext(ctx, kiln, append([]string{"serve", "--json", "--no-mdns", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "KILN_KEYS="+filepath.Join(t.TempDir(), "no-keys"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("kiln serve %d: %s", cmd.Process.Pid, stderr.String())
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct{ Result struct{ Event, URL string } }
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Result.Event == "listening" {
				found <- ev.Result.URL
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case url := <-found:
		return url, cmd
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	t.Fatalf("kiln serve did not start: %s", stderr.String())
	return "", nil
}

// startNginx runs nginx in the foreground as a load balancer of upstreams ("host:port") and
// returns its URL.
func startNginx(ctx context.Context, t *testing.T, upstreams []string) string {
	t.Helper()
	nginx := testenv.Tool(t, "nginx")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "\t\tserver %s max_fails=1 fail_timeout=30s;\n", u)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream kiln {
%[2]s		keepalive 16;
	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://kiln;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Real-IP $remote_addr;
			proxy_connect_timeout 2s;
			proxy_next_upstream error timeout http_502 http_503 non_idempotent;
		}
	}
}
`, dir, servers.String(), addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx: %s%s", out.String(), log)
		}
	})
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %s%s", out.String(), log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replays counts requests that landed on an earlier try.
var replays atomic.Int64

// simAgent is a simulated device: its own key and its own loopback source address.
type simAgent struct {
	key  ed25519.PrivateKey
	dev  ota.Device
	http *http.Client
}

func newSimAgent(i int) *simAgent {
	pub, key, _ := ed25519.GenerateKey(nil)
	src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(2+i%250))}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}).DialContext}
	return &simAgent{key: key, http: &http.Client{Transport: tr, Timeout: 20 * time.Second},
		dev: ota.Device{ID: ota.DeviceID("tiny", pub), Key: ota.KeyString(pub), Name: "tiny", Version: "1.0.0",
			Arch: "x86_64", Board: "pc", Channel: "stable"}}
}

// send posts a request signed once, re-sending the same bytes until an answer comes. The
// server records a request's nonce with it, so a request lands once or not at all; 409 (a
// replay) means it landed on an earlier try — the agent's or nginx's, which retries a request
// whose server died on the other one.
func (a *simAgent) send(ctx context.Context, url, path string, v any) error {
	body, _ := json.Marshal(v)
	sig := ota.SignRequest(a.key, path, body, time.Now(), ota.NewNonce())
	var last string
	for try := 0; try < 20; try++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+path, bytes.NewReader(body))
		req.Header.Set(ota.SignatureHeader, sig)
		resp, err := a.http.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode/100 == 2:
				return nil
			case resp.StatusCode == http.StatusConflict:
				replays.Add(1)
				return nil // an earlier try landed
			case resp.StatusCode < 500:
				return fmt.Errorf("%s: %s %s", path, resp.Status, b)
			}
			last = resp.Status + " " + string(b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no answer: %s", path, last)
}

// Two kiln serve processes share one PostgreSQL database and one repository behind nginx;
// simulated devices check and report through nginx while one server is killed. Every report
// is in the shared history exactly once.
func TestScaleOutBehindNginx(t *testing.T) {
	kiln := os.Getenv("KILN_BIN")
	if kiln == "" {
		testenv.Missing(t, "KILN_BIN not set: run through make test")
	}
	testenv.Tool(t, "nginx")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := pgtest.Start(t).NewDB(t)
	keys := otatest.Keys(t)
	dir := t.TempDir()
	otatest.Publish(t, dir, keys, "1.0.0", otatest.Payload(8<<10, 1), repo.Options{NoDeltas: true})
	otatest.Publish(t, dir, keys, "1.1.0", otatest.Payload(8<<10, 2), repo.Options{NoDeltas: true})

	args := []string{"--repo", dir, "--db", dsn, "--proxy", "127.0.0.1"}
	urlA, procA := startServe(ctx, t, kiln, args...)
	urlB, _ := startServe(ctx, t, kiln, args...)
	lb := startNginx(ctx, t, []string{strings.TrimPrefix(urlA, "http://"), strings.TrimPrefix(urlB, "http://")})

	const devices = 40
	reports := []string{ota.StateDownloading, ota.StateInstalled, ota.StateBooted, ota.StateHealthy}
	total := devices * (1 + len(reports))
	var sent atomic.Int64
	killed := make(chan struct{})
	go func() {
		// Kill server A once a third of the requests went through.
		for sent.Load() < int64(total/3) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		procA.Process.Kill()
		close(killed)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	agents := make([]*simAgent, devices)
	for i := range agents {
		agents[i] = newSimAgent(i)
		wg.Add(1)
		go func(a *simAgent) {
			defer wg.Done()
			if err := a.send(ctx, lb, "/v1/check", ota.CheckRequest{Device: a.dev}); err != nil {
				errs <- err
				return
			}
			sent.Add(1)
			for _, st := range reports {
				if st == ota.StateHealthy {
					a.dev.Version = "1.1.0"
				}
				time.Sleep(20 * time.Millisecond)
				if err := a.send(ctx, lb, "/v1/report", ota.Report{Device: a.dev, State: st, Target: "1.1.0"}); err != nil {
					errs <- err
					return
				}
				sent.Add(1)
			}
		}(agents[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	<-killed
	if t.Failed() {
		return
	}
	t.Logf("%d requests through nginx, server A killed after %d; %d answered as landed before (a retry after the kill)", sent.Load(), total/3, replays.Load())

	store, err := fleet.Open(ctx, dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	devs, err := store.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != devices {
		t.Fatalf("%d devices in the database, want %d", len(devs), devices)
	}
	for _, a := range agents {
		hist, err := store.History(ctx, a.dev.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(hist) - 1; i >= 0; i-- {
			got = append(got, hist[i].State)
		}
		want := "update-available " + strings.Join(reports, " ")
		if strings.Join(got, " ") != want {
			t.Errorf("history of %s: %q, want %q (each once)", a.dev.ID, got, want)
		}
		if !strings.HasPrefix(hist[0].Addr, "127.0.") || strings.HasPrefix(hist[0].Addr, "127.0.0.1:") {
			t.Errorf("history of %s names %s, not the device's address", a.dev.ID, hist[0].Addr)
		}
	}
	ro, err := store.Rollout(ctx, "1.1.0")
	if err == nil && (ro.Tried != devices || ro.RolledBack != 0) {
		t.Errorf("rollout of 1.1.0: %+v, want %d healthy devices", ro, devices)
	}
}
