package flasher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/flasher/source"
	"github.com/kilnproject/kiln/internal/progress"
)

// The privileged helper protocol. The desktop app does not run as root: it starts `kiln
// flash-helper` through pkexec, writes one HelperRequest as a JSON line on its stdin and reads
// HelperMessage JSON lines from its stdout: progress events, then one "result" (or "error")
// message. Closing the helper's stdin cancels the flash. The helper applies every safety rule
// itself; it trusts nothing in the request beyond what a user could pass to `kiln flash`.

// HelperProtocol is the protocol version; a helper refuses requests of another version.
const HelperProtocol = 1

// HelperRequest is the job sent to the helper.
type HelperRequest struct {
	Protocol      int               `json:"protocol"`
	Image         string            `json:"image"`
	Devices       []string          `json:"devices"`
	Bmap          string            `json:"bmap,omitempty"`
	NoBmap        bool              `json:"no_bmap,omitempty"`
	NoVerify      bool              `json:"no_verify,omitempty"`
	AllowInternal bool              `json:"allow_internal,omitempty"`
	Confirm       map[string]string `json:"confirm,omitempty"`
	Eject         bool              `json:"eject,omitempty"`
	// SHA256, DownloadSHA256, ImageSHA256 and SizeHint are as in Options (a URL image's
	// published checksum and size).
	SHA256         string `json:"sha256,omitempty"`
	DownloadSHA256 string `json:"download_sha256,omitempty"`
	ImageSHA256    string `json:"image_sha256,omitempty"`
	SizeHint       int64  `json:"size_hint,omitempty"`
	// Expect pins each drive as the user chose it (by path); the helper refuses a drive whose name,
	// size or serial differ.
	Expect []Device `json:"expect,omitempty"`
	// Settings are first-boot settings written into the image while flashing (they hold secrets:
	// never log a request).
	Settings *customise.Settings `json:"settings,omitempty"`
}

// HelperMessage is one line from the helper.
type HelperMessage struct {
	Event    string          `json:"event"` // "progress", "result" or "error"
	Progress *progress.Event `json:"progress,omitempty"`
	Results  []Result        `json:"results,omitempty"`
	Error    string          `json:"error,omitempty"`
	Code     string          `json:"code,omitempty"`  // see ErrorCode
	Codes    []string        `json:"codes,omitempty"` // see ErrorCodes
}

var codes = []struct {
	code string
	err  error
}{
	{"system-drive", ErrSystemDrive}, {"internal", ErrInternal}, {"image-on-device", ErrImageOnDevice},
	{"not-block-device", ErrNotBlockDevice}, {"too-small", ErrTooSmall}, {"busy", ErrBusy},
	{"read-only", ErrReadOnly}, {"identity-changed", ErrIdentityChanged}, {"incomplete", ErrPartlyWritten},
	{"removed", ErrRemoved}, {"permission", ErrPermission}, {"verify", ErrVerify}, {"checksum", ErrChecksum}, {"source", ErrSource},
	{"cancelled", context.Canceled},
}

// ErrorCode names the sentinel an error wraps ("too-small", "busy", ...), or "" for none.
func ErrorCode(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// ErrorCodes names every sentinel err wraps (a checksum mismatch also leaves the drive partly
// written, for one), so that the other end of the helper protocol matches them all.
func ErrorCodes(err error) []string {
	var out []string
	for _, c := range codes {
		if errors.Is(err, c.err) {
			out = append(out, c.code)
		}
	}
	return out
}

// remoteError is an error reported by the helper, still matching its sentinels with errors.Is.
type remoteError struct {
	msg   string
	codes []string
}

func newRemoteError(msg, code string, more []string) *remoteError {
	return &remoteError{msg: msg, codes: append([]string{code}, more...)}
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Is(target error) bool {
	for _, c := range codes {
		if c.err == target && slices.Contains(e.codes, c.code) {
			return true
		}
	}
	return false
}

// ServeHelper runs one helper session: it reads a request from in, flashes, and writes messages to
// out. open, when not nil, opens the image files on the requesting user's behalf (see
// OpenAsUser); the job then reads them through the returned descriptors only.
func ServeHelper(ctx context.Context, in io.Reader, out io.Writer, log logrus.FieldLogger, open func(path string) (*os.File, error)) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m HelperMessage) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(m)
	}
	fail := func(err error) error {
		send(HelperMessage{Event: "error", Error: err.Error(), Code: ErrorCode(err), Codes: ErrorCodes(err)})
		return err
	}
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fail(fmt.Errorf("flash-helper: read request: %w", err))
	}
	var req HelperRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return fail(fmt.Errorf("flash-helper: bad request: %w", err))
	}
	if req.Protocol != HelperProtocol {
		return fail(fmt.Errorf("flash-helper: protocol %d requested, this helper speaks %d; install matching Kiln versions", req.Protocol, HelperProtocol))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // EOF or any further input on stdin cancels
		br.ReadByte()
		cancel()
	}()
	image, bmapPath := req.Image, req.Bmap
	if open != nil && !source.IsURL(image) {
		var files []*os.File
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		for _, p := range []*string{&image, &bmapPath} {
			if *p == "" {
				continue
			}
			f, err := open(*p)
			if err != nil {
				return fail(fmt.Errorf("flash-helper: %w: %w", ErrSource, err))
			}
			files = append(files, f)
			*p = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
		}
		if bmapPath == "" && !req.NoBmap { // the block map beside the image, opened as the user too
			for _, c := range bmapCandidates(req.Image) {
				if f, err := open(c); err == nil {
					files = append(files, f)
					bmapPath = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
					break
				}
			}
		}
	}
	opts := Options{Bmap: bmapPath, NoBmap: req.NoBmap, NoVerify: req.NoVerify, AllowInternal: req.AllowInternal,
		Confirm: req.Confirm, Eject: req.Eject, Log: log, SHA256: req.SHA256, DownloadSHA256: req.DownloadSHA256,
		ImageSHA256: req.ImageSHA256, SizeHint: req.SizeHint,
		Progress: progress.Throttle(func(e progress.Event) { send(HelperMessage{Event: "progress", Progress: &e}) }, 0)}
	if req.Settings != nil {
		c, err := customise.New(*req.Settings)
		if err != nil {
			return fail(fmt.Errorf("flash-helper: %w", err))
		}
		opts.Customise = c
	}
	job, err := PrepareContext(ctx, image, req.Devices, opts)
	if err != nil {
		return fail(err)
	}
	for _, want := range req.Expect {
		for _, d := range job.Targets {
			if d.Path == want.Path && (d.Name != want.Name || d.Size != want.Size || d.Serial != want.Serial) {
				return fail(fmt.Errorf("%s: %w since it was chosen; choose it again", d.Path, ErrIdentityChanged))
			}
		}
	}
	results, err := job.Run(ctx)
	send(HelperMessage{Event: "result", Results: results})
	return err
}

// HelperCommand returns the command that starts the helper: `kiln flash-helper` directly when
// already root, else through pkexec (which asks for the administrator password).
func HelperCommand(ctx context.Context, kiln string) (*exec.Cmd, error) {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, kiln, "flash-helper"), nil
	}
	pkexec, err := exec.LookPath("pkexec")
	if err != nil {
		return nil, fmt.Errorf("%w: writing drives needs administrator rights and pkexec (polkit) is not installed; install policykit-1 or run 'sudo kiln flash …'", ErrPermission)
	}
	return exec.CommandContext(ctx, pkexec, "--disable-internal-agent", kiln, "flash-helper"), nil
}

// RunHelper starts cmd (see HelperCommand), sends req and relays progress to f until the helper
// reports its result. Cancelling ctx closes the helper's stdin, which cancels the flash.
func RunHelper(ctx context.Context, cmd *exec.Cmd, req HelperRequest, f progress.Func) ([]Result, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Cancel = func() error { return stdin.Close() } // the helper runs as root: ask, don't kill
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start flash helper: %w", err)
	}
	results, err := talkToHelper(ctx, stdin, stdout, req, f)
	werr := cmd.Wait()
	if err == nil && results == nil {
		if ee, ok := werr.(*exec.ExitError); ok && (ee.ExitCode() == 126 || ee.ExitCode() == 127) {
			return nil, fmt.Errorf("%w: administrator authentication was dismissed or failed", ErrPermission)
		}
		return nil, fmt.Errorf("flash helper ended without a result (%v): %s", werr, strings.TrimSpace(stderr.String()))
	}
	return results, err
}

// talkToHelper speaks the protocol over a pair of streams.
func talkToHelper(ctx context.Context, stdin io.WriteCloser, stdout io.Reader, req HelperRequest, f progress.Func) ([]Result, error) {
	req.Protocol = HelperProtocol
	b, _ := json.Marshal(req)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send job to flash helper: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { stdin.Close() })
	defer stop()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m HelperMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue // not a protocol line
		}
		switch m.Event {
		case "progress":
			if m.Progress != nil {
				f.Report(*m.Progress)
			}
		case "error":
			stdin.Close()
			return nil, newRemoteError(m.Error, m.Code, m.Codes)
		case "result":
			stdin.Close()
			var errs []error
			for i := range m.Results {
				if m.Results[i].Error != "" {
					m.Results[i].Err = newRemoteError(m.Results[i].Error, m.Results[i].Code, m.Results[i].Codes)
					errs = append(errs, m.Results[i].Err)
				}
			}
			return m.Results, errors.Join(errs...)
		}
	}
	return nil, nil
}
