// Package pgtest starts a throw-away PostgreSQL server (Debian's postgresql) for tests: its
// own data directory in a temporary directory, a unix socket only, stopped when the test ends.
package pgtest

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/kilnproject/kiln/internal/testenv"
)

// bin finds a PostgreSQL program: on PATH, else in Debian's /usr/lib/postgresql/<newest>/bin.
func bin(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(dirs) == 0 {
		testenv.Missing(t, "PostgreSQL (%s) is not installed (Debian package postgresql)", name)
	}
	major := func(p string) float64 { // /usr/lib/postgresql/15/bin/initdb → 15
		f, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return f
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(major(a), major(b)) })
	return dirs[len(dirs)-1]
}

// Server is a running test server.
type Server struct {
	query string // the URL's query: socket directory, port
	admin *sql.DB
	n     int
}

// Start starts a PostgreSQL server; it stops and its files go at the end of t.
func Start(t testing.TB) *Server {
	t.Helper()
	initdb, postgres := bin(t, "initdb"), bin(t, "postgres")
	cred := credential(t) // PostgreSQL refuses to run as root
	// Not t.TempDir: the server's user must reach the directory.
	dir, err := os.MkdirTemp("", "kiln-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "run")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := chown(d, cred); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, initdb, "-D", data, "-U", "kiln", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = sysProc(cred)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(postgres, "-D", data, "-k", sock, "-c", "listen_addresses=", "-p", "5432",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	srv.SysProcAttr = sysProc(cred)
	srv.Dir, srv.Stdout, srv.Stderr = dir, logf, logf
	if err := srv.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		stop(srv) // fast shutdown
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			srv.Process.Kill()
			<-exited
		}
		logf.Close()
	})
	query := "?host=" + url.QueryEscape(sock) + "&port=5432&sslmode=disable"
	admin, err := sql.Open("pgx", "postgres://kiln@/postgres"+query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() }) // before the server stops (cleanups run last first)
	for {
		err = admin.PingContext(ctx)
		if err == nil {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("postgres exited: %s", log)
		case <-ctx.Done():
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("postgres did not start: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return &Server{query: query, admin: admin}
}

// NewDB creates an empty database and returns its URL (postgres://kiln@/kilnN?host=<socket dir>…).
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	s.n++
	name := fmt.Sprintf("kiln%d", s.n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return "postgres://kiln@/" + name + s.query
}
