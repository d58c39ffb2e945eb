// Package rsync is the rsync filesystem driver: a live pass while the container runs and a final
// delta while it is frozen, with -aHAX --numeric-ids --sparse --devices --specials --delete
// semantics (hard links, ACLs, xattrs, sparse files, device nodes, numeric ownership), carried
// over ferry's own SSH connection.
//
// The local rsync client is started with `-e "ferry __rsh"`: that helper hands rsync's remote
// command line and byte stream to ferry through an inherited socket, and ferry carries them in a
// stream to ferry-receiver, which checks the arguments against an allowlist and runs
// `rsync --server` into the directory it maps the mount's name to. The source never names a
// target path, and the target never runs anything but a receiving rsync.
package rsync

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/transport/wire"
)

// Name of the driver in plans and reports.
const Name = "rsync"

// RshCmd is the hidden subcommand of the binary given as Rsh that relays rsync's stream.
const RshCmd = "__rsh"

// Args are the rsync client options.
var Args = []string{"-aHAX", "--numeric-ids", "--sparse", "--devices", "--specials", "--delete"}

// Driver is the source side of the rsync driver.
type Driver struct {
	Streams snapshot.StreamOpener
	// Rsh is the argv prefix of the relay helper, e.g. {"/usr/local/bin/ferry", "__rsh"}.
	Rsh []string
	Log *slog.Logger
}

var _ snapshot.Driver = (*Driver)(nil)

// Name implements snapshot.Driver.
func (d *Driver) Name() string { return Name }

// PreSync implements snapshot.Driver.
func (d *Driver) PreSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	return d.sync(ctx, m)
}

// FinalSync implements snapshot.Driver.
func (d *Driver) FinalSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	return d.sync(ctx, m)
}

// Commit implements snapshot.Driver: rsync keeps nothing.
func (d *Driver) Commit(context.Context, snapshot.Mount) error { return nil }

// Abort implements snapshot.Driver: the target's copy goes with the target's container.
func (d *Driver) Abort(context.Context, snapshot.Mount) error { return nil }

func (d *Driver) sync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	start := time.Now()
	if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
		return snapshot.Stats{}, fmt.Errorf("rsync %s: source %s is not a directory: %w", m.Name, m.Source, errdefs.ErrInvalid)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return snapshot.Stats{}, err
	}
	local, child := os.NewFile(uintptr(fds[0]), "rsync-relay"), os.NewFile(uintptr(fds[1]), "rsync-relay-child")
	defer local.Close()

	rsh := append(append([]string{}, d.Rsh...), "3")
	args := append(append([]string{}, Args...), "-e", shellJoin(rsh), strings.TrimSuffix(m.Source, "/")+"/", "ferry:"+m.Name+"/")
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.ExtraFiles = []*os.File{child} // fd 3 in rsync, inherited by the relay helper
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		child.Close()
		return snapshot.Stats{}, fmt.Errorf("start rsync: %w", err)
	}
	child.Close()

	var n atomic.Int64
	relayErr := make(chan error, 1)
	go func() { relayErr <- d.relay(ctx, local, m.Name, &n) }()
	werr := cmd.Wait()
	local.Close()
	rerr := <-relayErr
	st := snapshot.Stats{Bytes: n.Load(), Duration: time.Since(start)}
	if werr != nil {
		if rerr != nil {
			return st, fmt.Errorf("rsync %s: %w (rsync: %s)", m.Name, rerr, strings.TrimSpace(stderr.String()))
		}
		return st, fmt.Errorf("rsync %s: %w: %s", m.Name, werr, strings.TrimSpace(stderr.String()))
	}
	return st, nil
}

// relay reads the helper's request (rsync's remote command), opens the stream and copies both
// ways until both directions end.
func (d *Driver) relay(ctx context.Context, local *os.File, name string, n *atomic.Int64) error {
	br := bufio.NewReader(local)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("rsync did not start its remote side: %w", err)
	}
	var argv []string
	if err := json.Unmarshal(line, &argv); err != nil {
		return fmt.Errorf("relay request: %w", err)
	}
	if len(argv) < 2 {
		return fmt.Errorf("relay request %q: %w", argv, errdefs.ErrProtocol)
	}
	s, err := d.Streams.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamRsync, Name: name, Args: argv})
	if err != nil {
		return err
	}
	defer s.Close()
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := io.Copy(s, br)
		n.Add(c)
		if err != nil {
			upErr = err
		}
		_ = s.CloseWrite()
	}()
	c, downErr := io.Copy(local, s)
	n.Add(c)
	_ = unix.Shutdown(int(local.Fd()), unix.SHUT_WR)
	wg.Wait()
	return errors.Join(upErr, downErr)
}

// RshMain is the relay helper rsync runs as its remote shell: argv is [FD host command...].
// It sends the command as one JSON line, then copies stdin→fd and fd→stdout.
func RshMain(argv []string) error {
	if len(argv) < 3 || argv[0] != "3" {
		return errors.New("usage: " + RshCmd + " 3 HOST COMMAND... (run by rsync -e)")
	}
	f := os.NewFile(3, "relay")
	if f == nil {
		return errors.New("no relay socket on fd 3")
	}
	req, _ := json.Marshal(argv[2:])
	if _, err := f.Write(append(req, '\n')); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(f, os.Stdin)
		_ = unix.Shutdown(3, unix.SHUT_WR)
		close(done)
	}()
	_, err := io.Copy(os.Stdout, f)
	return err
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t'\"\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
