package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota/fleet"
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
	db := fs.String("db", "", "device database, kept across restarts: a SQLite file or postgres://user:password@host/db (default: "+defaultDBHelp+")")
	maxDevices := fs.Int("max-devices", 0, "how many devices the server keeps (default 4096; the least recently seen make room)")
	proxy := fs.String("proxy", "", "addresses (or CIDR networks, comma-separated) of reverse proxies in front of the server, e.g. 127.0.0.1: their X-Real-IP header names the device")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	if *dir == "" || *addr == "" {
		return fmt.Errorf("%w: --repo DIR and --addr HOST:PORT are required", errUsage)
	}
	proxies, err := parseProxies(*proxy)
	if err != nil {
		return err
	}
	if !common.Verbose && env.Log.GetLevel() < logrus.InfoLevel {
		env.Log.SetLevel(logrus.InfoLevel) // show device reports
	}
	store, err := openDeviceDB(ctx, *db)
	if err != nil {
		return err
	}
	defer store.Close()
	srv, err := server.New(server.Config{Repo: *dir, Addr: *addr, Advertise: !*noMDNS, Name: *name, OwnerKeys: true,
		Log: env.Log, Store: store, Proxies: proxies, MaxDevices: *maxDevices})
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
	// The server logs a SigningError as a warning; JSON callers get it in the event too.
	if common.JSON {
		ev := map[string]string{"event": "listening", "url": srv.URL(), "repo": *dir, "fingerprint": fp}
		if err := srv.SigningError(); err != nil {
			ev["warning"] = err.Error()
		}
		env.printJSON(ev)
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

// parseProxies reads --proxy: addresses or CIDR networks, comma-separated.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%w: --proxy %q: give an IP address or a network such as 10.0.0.0/24", errUsage, f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

const defaultDBHelp = "$XDG_DATA_HOME/kiln/devices.db, else ~/.local/share/kiln/devices.db"

// deviceDBPath is the --db flag's file, or the default one.
func deviceDBPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return fleet.DefaultPath()
}

// openDeviceDB opens (creating it if needed) the device database of kiln serve.
func openDeviceDB(ctx context.Context, flag string) (*fleet.DB, error) {
	path, err := deviceDBPath(flag)
	if err != nil {
		return nil, err
	}
	return fleet.Open(ctx, path, 0)
}
