// Package cli implements the `kiln` sub-commands: thin front ends over the core packages, for
// scripting and headless use.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/internal/version"
)

// Command is one `kiln` sub-command. Each lives in its own file and registers itself in init.
type Command struct {
	Name    string
	Summary string
	// Run parses args (without the command name) and does the work; ctx is cancelled on Ctrl-C.
	Run func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]*Command{}

func register(c *Command) { commands[c.Name] = c }

// Env is what a command writes to.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Log            *logrus.Logger
}

// errUsage marks a command-line mistake: the message is printed with the command's usage.
var errUsage = errors.New("usage")

// Main runs the command named by args[0] and returns the process exit code.
func Main(args []string) int {
	env := &Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Log: logrus.New()}
	env.Log.SetOutput(os.Stderr)
	env.Log.SetLevel(logrus.WarnLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, env, args)
}

func run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout)
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintf(env.Stdout, "kiln %s\n", version.Version)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "kiln: unknown command %q (run 'kiln help' for the list)\n", args[0])
		return 2
	}
	err := c.Run(ctx, env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "kiln %s: %v\n", c.Name, err)
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(env.Stderr, "kiln %s: cancelled\n", c.Name)
		return 130
	}
	fmt.Fprintf(env.Stderr, "kiln %s: %v\n", c.Name, err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "kiln %s — build, flash, preview and serve OS images\n\nUsage: kiln <command> [flags]\n       kiln            (no arguments) opens the desktop app\n\nCommands:\n", version.Version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintf(w, "  %-14s %s\n\nRun 'kiln <command> -h' for a command's flags.\n", "version", "print the version")
}

// newFlags returns a flag set for a command with the flags every command shares.
func newFlags(env *Env, name, synopsis string) (*flag.FlagSet, *Common) {
	fs := flag.NewFlagSet("kiln "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := &Common{}
	fs.BoolVar(&c.JSON, "json", false, "print machine-readable JSON (progress events as JSON lines)")
	fs.BoolVar(&c.Verbose, "verbose", false, "log details to stderr")
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: kiln %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs, c
}

// Common holds the flags every command shares.
type Common struct {
	JSON, Verbose bool
}

// parse parses args, applies the shared flags to env and rejects stray arguments unless allowed.
func (c *Common) parse(env *Env, fs *flag.FlagSet, args []string, allowArgs bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if !allowArgs && fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.Verbose {
		env.Log.SetLevel(logrus.DebugLevel)
	}
	if c.JSON {
		env.Log.SetFormatter(&logrus.JSONFormatter{})
	}
	return nil
}
