package rsync

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// serverLongOptions are the long options a receiving rsync server may get from ferry's client.
var serverLongOptions = map[string]bool{
	"--delete": true, "--delete-during": true, "--numeric-ids": true, "--inplace": true, "--partial": true,
	"-@-1": true, // --modify-window=-1: compare modification times to the nanosecond
	// The client's --out-format=%i …: the server reports what it changed (itemized), so the
	// final sync knows which files it sent.
	"--log-format=%i": true,
}

// shortBundle is rsync's compact option list, e.g. -lHogDtpAXrSe.iLsfxCIvu.
var shortBundle = regexp.MustCompile(`^-[A-Za-z]+(e\.[A-Za-z]*)?$`)

// CheckServerArgs validates the remote command a source's rsync client asks for: a receiving
// `rsync --server` (never --sender) with known options, copying "." into name/. It returns the
// options to pass before the destination.
func CheckServerArgs(args []string, name string) ([]string, error) {
	bad := func(why string) ([]string, error) {
		return nil, fmt.Errorf("refusing rsync command %q: %s: %w", strings.Join(args, " "), why, errdefs.ErrInvalid)
	}
	if len(args) < 5 || args[0] != "rsync" || args[1] != "--server" {
		return bad("not a receiving rsync server")
	}
	opts := args[2 : len(args)-2]
	if args[len(args)-2] != "." || strings.TrimSuffix(args[len(args)-1], "/") != name {
		return bad("destination must be the mount " + name)
	}
	shorts := 0
	for _, o := range opts {
		switch {
		case o == "--sender":
			return bad("--sender would read the target")
		case shortBundle.MatchString(o):
			shorts++
		case serverLongOptions[o]:
		default:
			return bad("option " + o + " is not allowed")
		}
	}
	if shorts != 1 {
		return bad("expected one short option bundle")
	}
	return opts, nil
}

// Serve runs a receiving rsync server for one sync into dest, on the stream rw. args are the
// checked options from CheckServerArgs.
func Serve(ctx context.Context, rw io.ReadWriter, opts []string, dest string) error {
	if fi, err := os.Stat(dest); err != nil || !fi.IsDir() {
		return fmt.Errorf("rsync destination %s is not a directory: %w", dest, errdefs.ErrPrecondition)
	}
	argv := append(append([]string{"--server"}, opts...), ".", strings.TrimSuffix(dest, "/")+"/")
	cmd := exec.CommandContext(ctx, "rsync", argv...)
	// Give rsync the socket itself when there is one: no copy loops, and its exit is the end.
	if fc, ok := rw.(interface{ File() (*os.File, error) }); ok {
		f, err := fc.File()
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdin, cmd.Stdout = f, f
	} else {
		// A stream that is not a socket (a compressed one): copy stdin ourselves, since
		// exec.Cmd would wait for that copy, which only ends when the client closes, which it
		// does only after it saw our end (below).
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(stdin, rw)
			stdin.Close()
		}()
		cmd.Stdout = rw
		cmd.WaitDelay = 5 * time.Second
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // the server's end, as a socket's close would say it
	}
	if err != nil {
		return fmt.Errorf("rsync server into %s: %w: %s", dest, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
