// Command kiln-agent runs on devices booted from a Kiln image: it finds the owner's update server,
// installs signed updates into the inactive boot slot and confirms or rolls back the boot.
//
//	kiln-agent run      confirm this boot, then check for updates periodically (started by init)
//	kiln-agent check    check once and install an update if there is one
//	kiln-agent status   print the release, the boot entries and the pending update
//	kiln-agent version
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/version"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/agent"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		args = []string{"run"}
	}
	cmd := args[0]
	fs := flag.NewFlagSet("kiln-agent "+cmd, flag.ContinueOnError)
	var cfg agent.Config
	fs.StringVar(&cfg.Release, "release", "/etc/kiln/release.json", "release description of this image")
	fs.StringVar(&cfg.Root, "root", "/etc/kiln/root.json", "pinned trust root")
	fs.StringVar(&cfg.ESP, "esp", "/boot/efi", "mount point of the EFI system partition")
	fs.StringVar(&cfg.State, "state", "/data/kiln/ota", "state directory on the data partition")
	fs.DurationVar(&cfg.Interval, "interval", 5*time.Minute, "time between update checks")
	verbose := fs.Bool("verbose", false, "log details")
	switch cmd {
	case "version", "--version", "-version":
		fmt.Printf("kiln-agent %s\n", version.Version)
		return 0
	case "run", "check", "status":
	default:
		fmt.Fprintf(os.Stderr, "kiln-agent: unknown command %q (run, check, status, version)\n", cmd)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	log := logrus.New()
	log.SetFormatter(&lineFormatter{})
	log.SetOutput(consoleWriter())
	if *verbose {
		log.SetLevel(logrus.DebugLevel)
	}
	cfg.Log = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(cfg)
	if err != nil {
		log.Error(err)
		return 1
	}
	switch cmd {
	case "status":
		return status(cfg)
	case "check":
		if err := a.Assess(ctx); err != nil {
			log.WithError(err).Warn("boot assessment")
		}
		err = a.CheckAndInstall(ctx)
		if errors.Is(err, ota.ErrNoUpdate) {
			log.Info("up to date")
			return 0
		}
	default:
		err = a.Run(ctx)
	}
	if err != nil {
		log.Error(err)
		return 1
	}
	return 0
}

func status(cfg agent.Config) int {
	rel, _ := os.ReadFile(cfg.Release)
	fmt.Printf("release: %s\n", bytes.TrimSpace(rel))
	des, _ := os.ReadDir(filepath.Join(cfg.ESP, "EFI", "Linux"))
	names := []string{}
	for _, de := range des {
		if e, ok := agent.ParseEntry(de.Name()); ok {
			s := e.File + " (blessed)"
			if e.Counted {
				s = fmt.Sprintf("%s (on trial: %d tries left, %d used)", e.File, e.Left, e.Done)
			}
			names = append(names, s)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println("entry:  ", n)
	}
	if p, err := os.ReadFile(filepath.Join(cfg.State, "pending.json")); err == nil {
		fmt.Printf("pending: %s\n", bytes.TrimSpace(p))
	}
	return 0
}

// lineFormatter prints "kiln-agent: <message> key=value …": one greppable line per event on the
// serial console.
type lineFormatter struct{}

func (lineFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("kiln-agent: ")
	if e.Level <= logrus.WarnLevel {
		b.WriteString(e.Level.String() + ": ")
	}
	b.WriteString(e.Message)
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fmt.Sprint(e.Data[k])
		if bytes.ContainsAny([]byte(v), " \"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// consoleWriter logs to stderr and, when stderr is not the console (init sends it to a log
// file on the data partition), to /dev/console as well, so events show on the serial port.
func consoleWriter() io.Writer {
	c, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return os.Stderr
	}
	ci, err1 := c.Stat()
	si, err2 := os.Stderr.Stat()
	if err1 == nil && err2 == nil && os.SameFile(ci, si) {
		c.Close()
		return os.Stderr
	}
	return io.MultiWriter(os.Stderr, c)
}
