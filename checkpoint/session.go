package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Session is pre-copy's one CRIU (`criu swrk`): iterative pre-dumps of the running container,
// then the final dump, as CRIU's RPC allows (PRE_DUMP… then DUMP). Memory tracking (soft-dirty)
// lets each round send only what changed since the previous one; the images of each round name
// the previous as their parent.
//
// Each round, the final dump included, sends its pages to its own page server socket. CRIU's
// RPC takes a page server socket only as a descriptor number of the swrk process, so every
// socket is inherited when the session starts: there are as many rounds as sockets given.
type Session struct {
	c    *criu.Criu
	st   *RuncState
	fds  []int // page server sockets, as numbered in swrk
	next int
	// CRIU 4.2's swrk adds each request's counters and timings to the previous requests' (its
	// forked pre-dump children share one statistics area that nothing resets): a round's own
	// figures are then the difference from the previous round's.
	cumulative bool
	prev       *DumpStats
}

// cumulativeStatsFrom is the first CRIU whose swrk statistics accumulate across requests.
const cumulativeStatsFrom = 40200

// SessionRequest starts a Session.
type SessionRequest struct {
	State       *RuncState
	PageServers []*os.File // one per round; the last is the final dump's
}

// StartSession starts CRIU with the page server sockets. The caller may close its copies of
// them afterwards.
func StartSession(req SessionRequest) (*Session, error) {
	if len(req.PageServers) < 2 {
		return nil, fmt.Errorf("a pre-copy session needs a page server for at least one pre-dump and the dump")
	}
	// Duplicates without close-on-exec live only while swrk starts: it inherits them.
	var dups []int
	defer func() {
		for _, fd := range dups {
			unix.Close(fd)
		}
	}()
	for _, f := range req.PageServers {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			return nil, err
		}
		dups = append(dups, fd)
	}
	v, err := Version(context.Background())
	if err != nil {
		return nil, err
	}
	c := newCriu()
	if err := c.Prepare(); err != nil {
		return nil, fmt.Errorf("start criu: %w", err)
	}
	return &Session{c: c, st: req.State, fds: append([]int(nil), dups...), cumulative: v >= cumulativeStatsFrom}, nil
}

// Rounds is how many rounds (pre-dumps and the dump) the session can still run.
func (s *Session) Rounds() int { return len(s.fds) - s.next }

// RoundRequest is one round: where its local images (all but the pages) and CRIU's log go, and
// the previous round's images directory relative to ImagesDir ("" for the first).
type RoundRequest struct {
	ImagesDir string
	WorkDir   string
	Parent    string
	// TCPEstablished (the dump): carry established TCP connections; the target must give the
	// container the same addresses.
	TCPEstablished bool
}

// PreDump copies the memory of the running container to the round's page server. The tasks
// are frozen only while CRIU collects their pages.
func (s *Session) PreDump(ctx context.Context, req RoundRequest) (*DumpStats, error) {
	if s.Rounds() < 2 {
		return nil, fmt.Errorf("no page server left for another pre-dump")
	}
	opts, closeDirs, err := s.roundOptions(DumpRequest{State: s.st, ImagesDir: req.ImagesDir, WorkDir: req.WorkDir, LeaveRunning: true}, req.Parent)
	if err != nil {
		return nil, err
	}
	defer closeDirs()
	opts.LogFile = proto.String("pre-dump.log")
	if err := s.c.PreDump(opts, nil); err != nil {
		return nil, fmt.Errorf("criu pre-dump of pid %d: %w%s", s.st.InitProcessPid, criuFailure(err), LogErrors(filepath.Join(req.WorkDir, "pre-dump.log")))
	}
	return s.roundStats(req.WorkDir)
}

// Dump is the final round: the container must be frozen; it stays so (LeaveRunning).
func (s *Session) Dump(ctx context.Context, req RoundRequest) (*DumpStats, error) {
	if s.Rounds() < 1 {
		return nil, fmt.Errorf("no page server left for the dump")
	}
	if err := writeDescriptors(req.ImagesDir, s.st.ExternalDescriptors); err != nil {
		return nil, err
	}
	s.next = len(s.fds) - 1 // the dump's socket is the last, whatever rounds were skipped
	opts, closeDirs, err := s.roundOptions(DumpRequest{State: s.st, ImagesDir: req.ImagesDir, WorkDir: req.WorkDir, LeaveRunning: true,
		TCPEstablished: req.TCPEstablished}, req.Parent)
	if err != nil {
		return nil, err
	}
	defer closeDirs()
	if err := s.c.Dump(opts, nil); err != nil {
		return nil, fmt.Errorf("criu dump of pid %d: %w%s", s.st.InitProcessPid, criuFailure(err), LogErrors(filepath.Join(req.WorkDir, "dump.log")))
	}
	return s.roundStats(req.WorkDir)
}

// roundOptions are the dump's options with the round's directories, parent, tracking and
// page server.
func (s *Session) roundOptions(req DumpRequest, parent string) (*rpc.CriuOpts, func(), error) {
	opts, err := dumpOptions(req)
	if err != nil {
		return nil, nil, err
	}
	imgDir, err := os.Open(req.ImagesDir)
	if err != nil {
		return nil, nil, err
	}
	workDir, err := os.Open(req.WorkDir)
	if err != nil {
		imgDir.Close()
		return nil, nil, err
	}
	opts.ImagesDirFd = proto.Int32(int32(imgDir.Fd()))
	opts.WorkDirFd = proto.Int32(int32(workDir.Fd()))
	opts.TrackMem = proto.Bool(true) // a pre-dump always tracks; the dump must too, to skip pages
	if parent != "" {
		opts.ParentImg = proto.String(parent)
	}
	opts.Ps = &rpc.CriuPageServerInfo{Fd: proto.Int32(int32(s.fds[s.next]))}
	s.next++
	return opts, func() { imgDir.Close(); workDir.Close() }, nil
}

// Close ends CRIU (and with it its copies of the page server sockets).
func (s *Session) Close() error {
	err := s.c.Cleanup()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// readStats reads the round's stats-dump (a pre-dump writes one too).
// roundStats are the figures of the round that just ran.
func (s *Session) roundStats(workDir string) (*DumpStats, error) {
	raw, err := readStats(workDir)
	if err != nil {
		return nil, err
	}
	own := *raw
	if s.cumulative && s.prev != nil {
		own = raw.since(s.prev)
	}
	s.prev = raw
	return &own, nil
}

// since is d minus an earlier total p of the same session. Counters that went down mean they
// were not cumulative after all: d is returned as it is.
func (d *DumpStats) since(p *DumpStats) DumpStats {
	if d.PagesScanned < p.PagesScanned || d.PagesSkipped < p.PagesSkipped || d.PagesWritten < p.PagesWritten ||
		d.PagesLazy < p.PagesLazy || d.FrozenTime < p.FrozenTime || d.MemdumpTime < p.MemdumpTime {
		return *d
	}
	return DumpStats{
		FreezingTime: d.FreezingTime - p.FreezingTime, FrozenTime: d.FrozenTime - p.FrozenTime,
		MemdumpTime: d.MemdumpTime - p.MemdumpTime, MemwriteTime: d.MemwriteTime - p.MemwriteTime,
		PagesScanned: d.PagesScanned - p.PagesScanned, PagesSkipped: d.PagesSkipped - p.PagesSkipped,
		PagesWritten: d.PagesWritten - p.PagesWritten, PagesLazy: d.PagesLazy - p.PagesLazy,
	}
}

func readStats(workDir string) (*DumpStats, error) {
	d, err := os.Open(workDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return readDumpStats(d)
}
