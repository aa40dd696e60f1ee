// Package decompress runs decompression programs (xz, igzip, pigz …) as streaming readers. The
// programs are used where they are faster than the Go decoders: liblzma decodes xz about five
// times faster per core than the Go ports, and ISA-L's igzip inflates about twice as fast as zlib.
package decompress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// ProgramError is a decompression program's failure: corrupt or cut-off input, as it reported it.
type ProgramError struct {
	Name   string // the program
	Err    error  // its exit status
	Stderr string // what it printed
}

func (e *ProgramError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, e.Stderr)
}

func (e *ProgramError) Unwrap() error { return e.Err }

// Truncated reports whether the program said its input ended early.
func (e *ProgramError) Truncated() bool {
	s := strings.ToLower(e.Stderr)
	return strings.Contains(s, "unexpected end") || strings.Contains(s, "does not contain a complete") ||
		strings.Contains(s, "corrupted -- incomplete") || strings.Contains(s, "premature end") || strings.Contains(s, "missing trailer")
}

// Available reports whether the program is installed.
func Available(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// Program runs name with args, in as its standard input, and returns its standard output. Reading
// to the end returns the program's verdict: a failed exit is a *ProgramError from Read, never a
// clean io.EOF. The output pipe is enlarged where the system allows, so a fast program and its
// reader switch less often. Cancelling ctx kills the program.
func Program(ctx context.Context, in io.Reader, name string, args ...string) (io.ReadCloser, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	growPipe(pw)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = in
	cmd.Stdout = pw
	r := &programReader{cmd: cmd, out: pr, name: name}
	cmd.Stderr = &r.stderr
	err = cmd.Start()
	pw.Close() // the child holds its own copy
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return r, nil
}

type programReader struct {
	cmd    *exec.Cmd
	out    *os.File
	name   string
	stderr bytes.Buffer
	eof    bool
	once   sync.Once
	err    error
}

func (r *programReader) Read(p []byte) (int, error) {
	n, err := r.out.Read(p)
	if err == io.EOF {
		r.eof = true
		if werr := r.finish(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// Close ends the program. After the end of its output it reports the program's verdict. Before it,
// a short remainder (such as a tar archive's end padding) is drained so the verdict still counts;
// otherwise the program is killed and nothing is reported.
func (r *programReader) Close() error {
	if !r.eof {
		if n, _ := io.CopyN(io.Discard, r.out, 64<<10); n == 64<<10 {
			r.once.Do(func() {
				_ = r.cmd.Process.Kill()
				_ = r.cmd.Wait()
			})
		}
	}
	err := r.finish()
	r.out.Close()
	return err
}

func (r *programReader) finish() error {
	r.once.Do(func() {
		if err := r.cmd.Wait(); err != nil {
			r.err = &ProgramError{Name: r.name, Err: err, Stderr: strings.TrimSpace(r.stderr.String())}
		}
	})
	return r.err
}
