package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota/repo"
	"github.com/kilnproject/kiln/ota/server"
)

func init() {
	register(&Command{Name: "serve", Summary: "serve an update repository to devices on the LAN", Run: runServe})
}

func runServe(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "serve", "--repo DIR --addr HOST:PORT")
	dir := fs.String("repo", "", "update repository directory (made by kiln publish)")
	addr := fs.String("addr", "", "address to listen on, e.g. 192.168.1.10:8080 (0.0.0.0:8080 for every interface)")
	noMDNS := fs.Bool("no-mdns", false, "do not advertise the server with DNS-SD (_kiln-ota._tcp)")
	name := fs.String("name", "", "DNS-SD instance name (default: Kiln updates on <hostname>)")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	if *dir == "" || *addr == "" {
		return fmt.Errorf("%w: --repo DIR and --addr HOST:PORT are required", errUsage)
	}
	if !common.Verbose && env.Log.GetLevel() < logrus.InfoLevel {
		env.Log.SetLevel(logrus.InfoLevel) // show device reports
	}
	// With the owner's keys at hand the server keeps the timestamp fresh; it never makes keys.
	var keys *repo.Keys
	if keyDir, err := repo.DefaultKeyDir(); err == nil {
		if _, err := os.Stat(filepath.Join(keyDir, "root.json")); err == nil {
			if keys, err = repo.LoadOrCreateKeys(keyDir); err != nil {
				env.Log.WithError(err).Warn("signing keys unusable: the timestamp will not be re-signed")
			}
		}
	}
	srv, err := server.New(server.Config{Repo: *dir, Addr: *addr, Advertise: !*noMDNS, Name: *name, Keys: keys, Log: env.Log})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	r, _ := repo.Load(*dir)
	fp := ""
	if r != nil {
		fp, _ = repo.Fingerprint(r.RootJSON)
	}
	if common.JSON {
		env.printJSON(map[string]string{"event": "listening", "url": srv.URL(), "repo": *dir, "fingerprint": fp})
	} else {
		fmt.Fprintf(env.Stdout, "serving %s at %s (root key %s); Ctrl-C stops\n", *dir, srv.URL(), fp)
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(stopCtx); err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, "kiln serve: stopped")
	return nil
}
