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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// Args are the rsync client options. Modification times are compared to the nanosecond
// (--modify-window=-1): rsync's default, whole seconds, would skip a file rewritten in place
// within the second of the pre-sync.
var Args = []string{"-aHAX", "--numeric-ids", "--sparse", "--devices", "--specials", "--delete", "--modify-window=-1"}

// recheckArgs are the options of the final sync's second pass over recently modified files:
// every listed file goes through the delta check whatever its size and mtime, and is updated in
// place (its inode, hence its hard links, kept).
var recheckArgs = []string{"-aHAX", "--numeric-ids", "--inplace", "--ignore-times", "--from0", "--files-from=-"}

// clockMargin covers the coarseness of the clock file times come from (a kernel tick) and clock
// steps: files modified since the pre-sync started, less this margin, are rechecked.
const clockMargin = 2 * time.Second

// Driver is the source side of the rsync driver.
type Driver struct {
	Streams snapshot.StreamOpener
	// Rsh is the argv prefix of the relay helper, e.g. {"/usr/local/bin/ferry", "__rsh"}.
	Rsh []string
	// BaseMark is recorded (xattr BaseXattr) on a volume's source directory after the commit:
	// the stale copy left there may serve as the base of a move back, and the target knows it.
	BaseMark string
	Log      *slog.Logger
	// Itemize: the target's rsync server accepts itemized output (wire.FeatureRsyncItemize),
	// so the final sync rechecks only the recently modified files its first pass did not send.
	Itemize bool

	mu      sync.Mutex
	started map[string]time.Time // mount name → when its first pre-sync started
}

var _ snapshot.Driver = (*Driver)(nil)

// Name implements snapshot.Driver.
func (d *Driver) Name() string { return Name }

// Prepare implements snapshot.Driver: the source must be a directory.
func (d *Driver) Prepare(_ context.Context, m snapshot.Mount) error {
	if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
		return fmt.Errorf("rsync %s: source %s is not a directory: %w", m.Name, m.Source, errdefs.ErrInvalid)
	}
	return nil
}

// PreSync implements snapshot.Driver.
func (d *Driver) PreSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	d.mu.Lock()
	if d.started == nil {
		d.started = map[string]time.Time{}
	}
	if _, ok := d.started[m.Name]; !ok {
		d.started[m.Name] = time.Now()
	}
	d.mu.Unlock()
	return d.run(ctx, m, Args, nil, nil)
}

// FinalSync implements snapshot.Driver. A first pass copies what changed by size or time; a
// second pass rechecks, block by block, every file modified since the pre-sync began that the
// first pass did not send: a file written twice within one clock tick, with the pre-sync
// reading it in between, keeps its size and mtime and would otherwise be skipped. A file the
// first pass sent was rebuilt from the frozen source and checked whole, so it needs no
// recheck — and when the first pass sent every recently modified file, the second pass (an
// rsync round trip and another read of those files on both hosts) does not run.
func (d *Driver) FinalSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	var out bytes.Buffer
	args, sent := Args, map[string]bool{}
	if d.Itemize {
		args = append(append([]string{}, Args...), sentFormat)
	}
	st, err := d.run(ctx, m, args, nil, &out)
	if err != nil {
		return st, err
	}
	if d.Itemize {
		sent = sentFiles(out.Bytes())
	}
	d.mu.Lock()
	since, ok := d.started[m.Name]
	d.mu.Unlock()
	if !ok {
		return st, nil // no pre-sync: the one pass ran on a frozen tree
	}
	list, err := modifiedSince(m.Source, since.Add(-clockMargin), sent)
	if err != nil || len(list) == 0 {
		return st, err
	}
	st2, err := d.run(ctx, m, recheckArgs, list, nil)
	st.Bytes += st2.Bytes
	st.Duration += st2.Duration
	return st, err
}

// sentFormat makes rsync print one line per item it changed: its itemized change and its name.
const sentFormat = "--out-format=%i %n"

// sentFiles returns the regular files a pass with sentFormat sent (itemized "<f…"), by their
// path relative to the mount. A name rsync had to escape (\#ooo) matches no path: that file is
// rechecked, which is only slower.
func sentFiles(out []byte) map[string]bool {
	sent := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		item, name, ok := strings.Cut(l, " ")
		if ok && strings.HasPrefix(item, "<f") && name != "" {
			sent[name] = true
		}
	}
	return sent
}

// modifiedSince lists (NUL-separated, relative) the regular files under dir modified at or
// after t, except those in skip.
func modifiedSince(dir string, t time.Time, skip map[string]bool) ([]byte, error) {
	var b bytes.Buffer
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); !fi.ModTime().Before(t) && !skip[rel] {
			b.WriteString(rel)
			b.WriteByte(0)
		}
		return nil
	})
	return b.Bytes(), err
}

// BaseXattr marks a directory that holds a stale copy of a moved container's volume.
const BaseXattr = "trusted.ferry.base"

// Commit implements snapshot.Driver: the source directory of a volume stays (rsync copies) and
// is marked as the base of a later move back. The writable layer is gone with its container.
func (d *Driver) Commit(_ context.Context, m snapshot.Mount) error {
	if d.BaseMark == "" {
		return nil
	}
	err := unix.Setxattr(m.Source, BaseXattr, []byte(d.BaseMark), 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// Abort implements snapshot.Driver: the target's copy goes with the target's container.
func (d *Driver) Abort(context.Context, snapshot.Mount) error { return nil }

// run runs one local rsync with args (and stdin, for --files-from) into the mount's directory
// on the target; rsync's standard output goes to stdout if it is not nil.
func (d *Driver) run(ctx context.Context, m snapshot.Mount, opts []string, stdin []byte, stdout io.Writer) (snapshot.Stats, error) {
	start := time.Now()
	if err := d.Prepare(ctx, m); err != nil {
		return snapshot.Stats{}, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return snapshot.Stats{}, err
	}
	local, child := os.NewFile(uintptr(fds[0]), "rsync-relay"), os.NewFile(uintptr(fds[1]), "rsync-relay-child")
	defer local.Close()

	rsh := append(append([]string{}, d.Rsh...), "3")
	args := append(append([]string{}, opts...), "-e", shellJoin(rsh), strings.TrimSuffix(m.Source, "/")+"/", "ferry:"+m.Name+"/")
	cmd := exec.CommandContext(ctx, "rsync", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.ExtraFiles = []*os.File{child} // fd 3 in rsync, inherited by the relay helper
	// Cancelled, rsync and its relay helper go together (the helper holds rsync's stderr, so
	// killing rsync alone would leave Wait waiting for that pipe).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		child.Close()
		return snapshot.Stats{}, fmt.Errorf("start rsync: %w", err)
	}
	child.Close()

	var n atomic.Int64
	relayErr := make(chan error, 1)
	go func() {
		err := d.relay(ctx, local, m.Name, &n)
		if err != nil {
			// rsync (through its relay helper) waits on this socket: end it, or it waits forever.
			_ = unix.Shutdown(int(local.Fd()), unix.SHUT_RDWR)
		}
		relayErr <- err
	}()
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
	// A stream whose other end went silent must not outlive the cancellation.
	defer context.AfterFunc(ctx, func() { _ = s.Close() })()
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
