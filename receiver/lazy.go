package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/transport/wire"
)

// lazyDaemon is post-copy's `criu lazy-pages`: it fills the restored task's memory from the
// source's lazy dump, then exits.
type lazyDaemon struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	err     error
	ended   time.Time
}

// startLazy starts the lazy-pages daemon on the lazy stream and arranges for runc restore to
// get --lazy-pages (restoreFlags). Called with s.mu held.
func (s *server) startLazy(criuWork string, ro *runtime.RestoreOptions) error {
	if s.lazyConn == nil {
		return fmt.Errorf("post-copy restore without a lazy stream: %w", errdefs.ErrProtocol)
	}
	if runtime.CustomRunc(s.rec) {
		return fmt.Errorf("the container names its own runc binary; post-copy needs ferry's runc wrapper: %w", errdefs.ErrUnsupported)
	}
	if err := os.MkdirAll(criuWork, 0o700); err != nil { // runc would create it later
		return err
	}
	f, err := s.lazyConn.File()
	if err != nil {
		return err
	}
	defer f.Close()
	cmd, err := checkpoint.LazyPagesDaemon(f, s.imagesDir, criuWork)
	if err != nil {
		return err
	}
	// The daemon holds the socket now: when it exits (done, or killed), the source's lazy dump
	// must see the end of the connection, so no other copy may stay open here.
	s.lazyConn.Close()
	s.lazyConn = nil
	d := &lazyDaemon{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		if d.err != nil {
			d.err = fmt.Errorf("criu lazy-pages: %w%s", d.err, checkpoint.LogErrors(criuWork+"/lazy-pages.log"))
		}
		d.ended = time.Now()
		close(d.done)
	}()
	s.lazy = d
	// The restore connects to the daemon's socket: wait for it (or for the daemon's end).
	sock := filepath.Join(criuWork, "lazy-pages.socket")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-d.done:
			return fmt.Errorf("the lazy-pages daemon ended before the restore: %w", d.err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lazy-pages daemon did not open %s: %w", sock, errdefs.ErrTransient)
		}
	}
	return nil
}

// stopLazy ends the daemon (on abort, or a failed restore) and closes the lazy stream: the
// source's lazy dump then ends too. Called with s.mu held.
func (s *server) stopLazy() {
	if d := s.lazy; d != nil {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
	}
	if s.lazyConn != nil {
		s.lazyConn.Close()
		s.lazyConn = nil
	}
}

// resident answers once the daemon has every page (post-copy's end).
func (s *server) resident(ctx context.Context, req wire.ResidentRequest) (wire.ResidentReply, error) {
	s.mu.Lock()
	d, committed := s.lazy, s.state() == StateCommitted
	s.mu.Unlock()
	if d == nil || !committed || req.MigrationID != s.j.ID {
		return wire.ResidentReply{}, fmt.Errorf("no committed post-copy migration here: %w", errdefs.ErrProtocol)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return wire.ResidentReply{}, ctx.Err()
	}
	if d.err != nil {
		return wire.ResidentReply{}, errors.Join(d.err, errdefs.ErrTransient)
	}
	return wire.ResidentReply{AfterRestore: d.ended.Sub(d.started)}, nil
}
