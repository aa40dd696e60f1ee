package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"

	"github.com/kilnproject/kiln/flasher"
)

func init() {
	register(&Command{Name: "flash-helper", Summary: "privileged flashing service for the desktop app (JSON lines on stdin/stdout)", Run: runFlashHelper})
}

// runFlashHelper serves one flash job for the desktop app, which starts it through pkexec. When
// started by pkexec, the image is opened with the requesting user's identity.
func runFlashHelper(ctx context.Context, env *Env, args []string) error {
	fs, common := newFlags(env, "flash-helper", "< request.json")
	if err := common.parse(env, fs, args, false); err != nil {
		return err
	}
	// Keep the garbage collector tight: a flash is a long stream of large buffers.
	debug.SetMemoryLimit(192 << 20)
	var open func(string) (*os.File, error)
	if s := os.Getenv("PKEXEC_UID"); s != "" {
		uid, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("bad PKEXEC_UID %q", s)
		}
		u, err := user.LookupId(s)
		if err != nil {
			return fmt.Errorf("look up the requesting user %s: %w", s, err)
		}
		gid, _ := strconv.Atoi(u.Gid)
		open = func(p string) (*os.File, error) { return flasher.OpenAsUser(p, uid, gid) }
	}
	return flasher.ServeHelper(ctx, env.Stdin, env.Stdout, env.Log, open)
}
