// Package migrate orchestrates one migration, on the source host: preflight on both sides,
// prepare the target, copy the filesystem live, freeze, dump, final filesystem delta, ship the
// checkpoint, restore (frozen) on the target, commit, retire the source.
//
// Safety rules, enforced here:
//   - every change registers its undo before it is made (internal/revert);
//   - until COMMIT is sent, any failure (or Ctrl-C) rolls back: the source is thawed exactly as it
//     was (frozen, never killed) and the target removes everything of the migration;
//   - the source copy is removed only after the target's explicit COMMITTED answer; a lost answer
//     is resolved by asking the target (never inferred from a dropped connection), and if that
//     is impossible the source stays frozen, its checkpoint on disk, and the outcome is in_doubt.
//
// migrate does not know how it reaches the target: Target is an interface (a ferry-receiver
// over SSH in production).
package migrate

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/internal/failpoint"
	"github.com/ferry-project/ferry/internal/hostinfo"
	"github.com/ferry-project/ferry/internal/revert"
	"github.com/ferry-project/ferry/network"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/blobstream"
	"github.com/ferry-project/ferry/transport/relay"
	"github.com/ferry-project/ferry/transport/sftpdir"
	"github.com/ferry-project/ferry/transport/wire"
)

// ErrRefused: preflight found reasons not to start. Nothing changed.
var ErrRefused = errors.New("migration refused")

// ErrInDoubt: COMMIT was sent but its outcome could not be learned.
var ErrInDoubt = errors.New("commit outcome unknown")

// Source is the container's current host.
type Source interface {
	Host() string
	Facts(ctx context.Context) wire.HostFacts
	Describe(ctx context.Context, id string) (*SourceContainer, error)
	Freeze(ctx context.Context, id string) error
	Thaw(ctx context.Context, id string) error
	Dump(ctx context.Context, id string, spec DumpSpec) (*checkpoint.DumpStats, error)
	// PreCopy starts an iterative checkpoint of the running container (pre-copy): pre-dumps,
	// then the final dump, each round's pages going to its own socket of pageServers (the last
	// is the final dump's). The caller may close its copies of the sockets afterwards.
	PreCopy(ctx context.Context, id string, pageServers []*os.File) (PreCopySession, error)
	// Retire removes the frozen source copy (task, container, writable layer).
	Retire(ctx context.Context, id string) error
	// ImageBlobs and OpenBlob read an image's content (to ship it to a target that lacks it).
	ImageBlobs(ctx context.Context, name string) (wire.Descriptor, []wire.Descriptor, error)
	OpenBlob(ctx context.Context, d wire.Descriptor) (io.ReadCloser, error)
}

// PreCopySession is a source's pre-copy checkpoint of one container (checkpoint.Session).
type PreCopySession interface {
	// PreDump copies the running container's memory (what changed since the previous round)
	// to the next round's page server; spec.Parent names the previous round's images.
	PreDump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error)
	// Dump is the final round, of the frozen container, to the last page server.
	Dump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error)
	Close() error
}

// DumpSpec says where a dump goes.
type DumpSpec struct {
	ImagesDir  string   // the image files (all of them, or all but the pages)
	WorkDir    string   // CRIU's log and stats
	Parent     string   // pre-copy: the previous round's images, relative to ImagesDir
	PageServer *os.File // connected to the target's page server: pages go there, not to ImagesDir
	// LazyPages (post-copy): pages are served on PageServer until the target has them all;
	// Ready is closed when the image files are complete.
	LazyPages bool
	Ready     chan<- struct{}
	// TCPEstablished: the container's network moves with it (same addresses on the target), so
	// its established TCP connections can too.
	TCPEstablished bool
}

// SourceContainer is what the source knows of the container to move.
type SourceContainer struct {
	Record      wire.Container
	Spec        *specs.Spec
	Status      string // containerd task status: running, paused, stopped, "" (no task)
	WritableDir string
	MemoryBytes uint64
	FSBytes     uint64
	Volumes     []wire.Volume // host directories bind-mounted into the container
	Problems    []string      // what cannot be moved (e.g. a bind-mounted file)
}

// Target is the destination host (ferry-receiver).
type Target interface {
	Host() string
	Preflight(ctx context.Context, req wire.PreflightRequest) (wire.PreflightReply, error)
	Prepare(ctx context.Context, req wire.PrepareRequest) error
	// Image asks which blobs of an image the target lacks, before they are streamed.
	Image(ctx context.Context, req wire.ImageRequest) (wire.ImageReply, error)
	OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error)
	Restore(ctx context.Context, req wire.RestoreRequest) (wire.RestoreReply, error)
	Commit(ctx context.Context, req wire.CommitRequest) (wire.CommitReply, error)
	// Resident waits, after a post-copy commit, until the target has every page.
	Resident(ctx context.Context, req wire.ResidentRequest) (wire.ResidentReply, error)
	// Probe measures the bare link (no compression, no limit) by sending n bytes; it returns
	// bytes per second.
	Probe(ctx context.Context, n int64) (float64, error)
	// Abort undoes the migration on the target, over the control channel or, if that is gone,
	// out of band. It reports the target's state afterwards ("aborted", "absent", "committed").
	Abort(ctx context.Context, req wire.AbortRequest) (string, error)
	// Status asks the target out of band for the migration's state (receiver.Status values).
	Status(ctx context.Context, id string) (string, error)
}

// StreamMeter is what a Target whose streams carry options (compression, a bandwidth limit)
// reports about them.
type StreamMeter interface {
	StreamOptions() transport.StreamOptions
	WireBytes() int64
}

// Config describes one migration.
type Config struct {
	ID string // generated when empty
	// CheckOnly stops after the preflight (ferry check HOST CONTAINER): the report says what
	// would happen — strategy, filesystem plan, problems — and nothing changes anywhere.
	CheckOnly bool
	// Progress, if set, receives the migration's events as they happen (from several
	// goroutines: it must be safe for concurrent use and quick).
	Progress  func(Event)
	Container string
	Namespace string
	Source    Source
	Target    Target
	// Drivers by name ("rsync", "zfs"): the plan picks one per mount.
	Drivers  map[string]snapshot.Driver
	StateDir string // source-side working directory: /var/lib/ferry
	// PreCopy is when pre-copy stops iterating (zero: DefaultPreCopyRule).
	PreCopy PreCopyRule
	// RunDir holds the image files the dump writes locally (all but the pages, which stream to
	// the target): a tmpfs, /run/ferry.
	RunDir string
	Log    *slog.Logger
	// TargetAddr is the target as the operator gave it ([user@]host[:port]), for `ferry recover`.
	TargetAddr string
	// ResolveTimeout bounds the search for a lost COMMIT's outcome (default 1 minute).
	ResolveTimeout time.Duration
	// Strategy is how memory moves: Auto (Choose decides), StopCopy (default), PreCopy,
	// PostCopy.
	Strategy string
	// MaxDowntime is what Auto aims for (default DefaultMaxDowntime).
	MaxDowntime time.Duration
	// FillStall ends a post-copy's wait for the remaining pages when none has moved between
	// the hosts for this long (default DefaultFillStall).
	FillStall time.Duration
}

// DefaultFillStall is how long post-copy's fill may move no byte before ferry gives up waiting.
// The target's lazy-pages daemon fetches every remaining page in the background, so a healthy
// fill never pauses; on a slow link bytes still trickle.
const DefaultFillStall = 2 * time.Minute

// Memory strategies.
const (
	StopCopy = "stop-copy"
	PreCopy  = "pre-copy"
	PostCopy = "post-copy"
)

// NewID returns a fresh migration id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "m-" + hex.EncodeToString(b[:])
}

type run struct {
	strategy  string // chosen in preflight
	shipImage bool
	cfg       Config
	log       *slog.Logger
	rep       *Report
	r         *revert.Reverter
	sc        *SourceContainer
	plan      []wire.Mount
	frozen    time.Time
	dir       string
	pages     *wire.StreamSum
	pre       *preCopy        // pre-copy: the session and its rounds
	lazy      chan lazyResult // post-copy: the lazy dump, serving pages until the target has them
	lazyBytes atomic.Int64    // post-copy: bytes on the lazy stream, both ways (the fill's progress)
}

// planned is one mount of the plan with its driver and the driver's view of it.
type planned struct {
	wire.Mount
	driver snapshot.Driver
	mount  snapshot.Mount
}

// mounts resolves the plan into drivers and source-side mounts.
func (m *run) mounts() ([]planned, error) {
	var out []planned
	for _, pm := range m.plan {
		d := m.cfg.Drivers[pm.Driver]
		if d == nil {
			return nil, fmt.Errorf("no %s driver on this host: %w", pm.Driver, errdefs.ErrUnsupported)
		}
		sm := snapshot.Mount{Name: pm.Name, Source: pm.Path}
		if pm.Name == RootfsMount {
			sm.Source = m.sc.WritableDir
		}
		for _, v := range m.sc.Volumes {
			if v.Name == pm.Name && v.ZFS != nil && pm.Driver == zfs.Name {
				sm.Dataset = v.ZFS.Dataset
				if b := snapshotByGUID(v.ZFS.Snapshots, pm.BaseGUID); b != "" {
					sm.Base = zfs.Short(b)
				}
			}
		}
		out = append(out, planned{Mount: pm, driver: d, mount: sm})
	}
	return out, nil
}

// Run performs the migration. The report is complete whatever the outcome; the error says why
// it did not commit (errors.Is(err, ErrRefused / ErrInDoubt) tell those cases apart).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.ID == "" {
		cfg.ID = NewID()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/ferry"
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/ferry"
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = time.Minute
	}
	if cfg.Strategy == "" {
		cfg.Strategy = StopCopy
	}
	if cfg.MaxDowntime == 0 {
		cfg.MaxDowntime = DefaultMaxDowntime
	}
	if cfg.PreCopy == (PreCopyRule{}) {
		cfg.PreCopy = DefaultPreCopyRule
	}
	m := &run{
		cfg: cfg, log: cfg.Log.With("migration", cfg.ID, "container", cfg.Container),
		rep: &Report{
			ID: cfg.ID, Container: cfg.Container, Namespace: cfg.Namespace,
			Source: cfg.Source.Host(), Target: cfg.Target.Host(),
			Strategy: cfg.Strategy, StartedAt: time.Now(),
		},
	}
	m.r = revert.New(m.log)
	m.rep.Compress = "none"
	sm, metered := cfg.Target.(StreamMeter)
	if metered {
		o := sm.StreamOptions()
		m.rep.BWLimit = o.BytesPerSecond
		if o.Compress != "" {
			m.rep.Compress = o.Compress
		}
	}
	err := m.run(ctx)
	m.emit(Event{Kind: EventDone, Outcome: m.rep.Outcome})
	if metered {
		m.rep.WireBytes = sm.WireBytes()
	}
	m.rep.TotalMs = m.rep.since(time.Now())
	// Phases are recorded as they end; some overlap (fs-final runs beside the dump).
	sort.SliceStable(m.rep.Phases, func(i, j int) bool { return m.rep.Phases[i].StartMs < m.rep.Phases[j].StartMs })
	if err != nil {
		m.rep.Error = err.Error()
	}
	return m.rep, err
}

// phase runs f as a named, timed step of the report.
func (m *run) phase(name string, f func() error) error {
	p := Phase{Name: name, StartMs: m.rep.since(time.Now())}
	m.log.Info("phase", "name", name)
	m.emit(Event{Kind: EventPhaseStart, Phase: name})
	err := f()
	p.EndMs = m.rep.since(time.Now())
	if err != nil {
		p.Error = err.Error()
	}
	m.emit(Event{Kind: EventPhaseEnd, Phase: name, Error: p.Error})
	m.rep.mu.Lock()
	defer m.rep.mu.Unlock()
	m.rep.Phases = append(m.rep.Phases, p)
	return err
}

// FailureReporter is a Target that can say what failed on its side of the streams.
type FailureReporter interface {
	Failures(ctx context.Context, id string) ([]string, error)
}

// explain adds to a failure what the target saw go wrong in its streams: the source sees only
// a broken stream ("EOF", rsync's exit status) when the cause is the target's (its disk full).
func (m *run) explain(ctx context.Context, err error) error {
	fr, ok := m.cfg.Target.(FailureReporter)
	if !ok {
		return err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	failures, ferr := fr.Failures(qctx, m.cfg.ID)
	if ferr != nil || len(failures) == 0 {
		return err
	}
	return fmt.Errorf("%w; on %s: %s", err, m.cfg.Target.Host(), strings.Join(failures, "; "))
}

func (m *run) run(ctx context.Context) (err error) {
	committed := false
	defer func() {
		if err == nil || committed || m.rep.Outcome == OutcomeInDoubt {
			return
		}
		if m.rep.Outcome == OutcomeRefused {
			return
		}
		err = m.explain(ctx, err)
		m.rep.Rollback = m.r.Pending()
		if rerr := m.r.Fail(ctx); rerr != nil {
			m.rep.Outcome = OutcomeRollbackIncomplete
			err = fmt.Errorf("%w; rollback incomplete: %v", err, rerr)
			return
		}
		m.rep.Outcome = OutcomeRolledBack
	}()
	c := m.cfg
	// Registered first: a target that fails even in preflight (its receiver killed) may leave
	// something behind, and its out-of-band abort sweeps that. A refusal rolls nothing back.
	m.r.Add("abort on "+c.Target.Host(), func(ctx context.Context) error {
		_, err := c.Target.Abort(ctx, wire.AbortRequest{MigrationID: c.ID, Reason: "source rolled back"})
		return err
	})
	if err := m.phase("preflight", func() error { return m.preflight(ctx) }); err != nil {
		return err
	}
	if c.CheckOnly {
		m.rep.Outcome = OutcomeChecked
		return nil
	}
	mounts, err := m.mounts()
	if err != nil {
		return err
	}

	if m.shipImage {
		if err := m.phase("image", func() error { return m.sendImage(ctx) }); err != nil {
			return err
		}
	}
	if err := m.phase("prepare", func() error {
		return c.Target.Prepare(ctx, wire.PrepareRequest{MigrationID: c.ID, Container: m.sc.Record, Mounts: m.plan})
	}); err != nil {
		return err
	}
	for _, pm := range mounts {
		pm := pm
		m.r.Add("abort "+pm.Driver+" "+pm.Name, func(ctx context.Context) error { return pm.driver.Abort(ctx, pm.mount) })
	}
	if err := m.phase("fs-presync", func() error {
		for _, pm := range mounts {
			if err := pm.driver.Prepare(ctx, pm.mount); err != nil {
				return err
			}
			st, err := pm.driver.PreSync(ctx, pm.mount)
			m.rep.addStream(pm.Name+"-presync", st.Bytes)
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	m.dir = filepath.Join(c.RunDir, "migrations", c.ID)
	images, work := filepath.Join(m.dir, "images"), filepath.Join(m.dir, "work")
	m.r.Add("remove the local checkpoint", func(context.Context) error { return os.RemoveAll(m.dir) })
	if m.strategy == PreCopy {
		if err := m.phase("pre-copy", func() error { return m.preCopy(ctx) }); err != nil {
			return err
		}
	}

	m.r.Add("thaw the source", func(ctx context.Context) error { return c.Source.Thaw(ctx, c.Container) })
	if err := m.phase("freeze", func() error {
		m.frozen = time.Now()
		return c.Source.Freeze(ctx, c.Container)
	}); err != nil {
		return err
	}
	// The final filesystem sync runs beside the dump: both only read the frozen container, and
	// neither needs the other, so the downtime pays for the longer of the two, not their sum.
	// The mounts sync side by side too (the writable layer and each volume): each final pass
	// is mostly round trips and process start-up, so in a row they would add up.
	fsCtx, fsCancel := context.WithCancel(ctx)
	defer fsCancel()
	fsFinal := make(chan error, 1)
	go func() {
		fsFinal <- m.phase("fs-final", func() error {
			g, gctx := errgroup.WithContext(fsCtx)
			for _, pm := range mounts {
				g.Go(func() error {
					st, err := pm.driver.FinalSync(gctx, pm.mount)
					m.rep.addStream(pm.Name+"-final", st.Bytes)
					return err
				})
			}
			return g.Wait()
		})
	}()
	if err := m.phase("dump", func() error {
		for _, d := range []string{images, work} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		if err := failpoint.Inject("source/dump"); err != nil {
			return err
		}
		spec := DumpSpec{ImagesDir: images, WorkDir: work, TCPEstablished: m.sc.Record.Network != nil}
		var st *checkpoint.DumpStats
		var err error
		switch m.strategy {
		case PostCopy:
			err = m.startLazyDump(ctx, spec)
		case PreCopy:
			st, err = m.preCopyDump(ctx, spec)
		default:
			st, err = m.dumpToPageServer(ctx, spec)
		}
		if err != nil {
			return err
		}
		if st == nil {
			st = &checkpoint.DumpStats{} // a lazy dump's stats come when it ends
		}
		m.rep.CRIU.LocalBytes, m.rep.CRIU.LocalPageFiles = localImages(m.dir)
		m.rep.CRIU.FrozenTimeMs, m.rep.CRIU.MemdumpTimeMs, m.rep.CRIU.MemwriteTimeMs = ms(st.FrozenTime), ms(st.MemdumpTime), ms(st.MemwriteTime)
		m.rep.CRIU.PagesScanned, m.rep.CRIU.PagesWritten, m.rep.CRIU.PagesSkipped = st.PagesScanned, st.PagesWritten, st.PagesSkipped
		return nil
	}); err != nil {
		fsCancel() // and wait for it: the rollback must not race a running sync
		<-fsFinal
		return err
	}
	if err := <-fsFinal; err != nil {
		return err
	}
	var sums []wire.FileSum
	if err := m.phase("images", func() error {
		s, err := c.Target.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamImages})
		if err != nil {
			return err
		}
		defer s.Close()
		var n int64
		sums, n, err = sftpdir.Send(ctx, s, images)
		m.rep.addStream("checkpoint", n)
		return err
	}); err != nil {
		return err
	}
	if err := m.phase("restore", func() error {
		req := wire.RestoreRequest{MigrationID: c.ID, Images: sums, Pages: m.pages, Lazy: m.strategy == PostCopy}
		if m.pre != nil {
			req.PreRounds = m.pre.sums
		}
		rr, err := c.Target.Restore(ctx, req)
		if err != nil {
			return err
		}
		m.rep.CRIU.PagesRestored, m.rep.CRIU.RestoreTimeMs = rr.PagesRestored, ms(rr.RestoreTime)
		return nil
	}); err != nil {
		return err
	}
	if err := failpoint.Inject("source/before-commit"); err != nil {
		return err
	}

	// COMMIT. From here the source must not be thawed unless the target is known not to have
	// committed. The exchange is not cancellable: Ctrl-C waits for its outcome.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var cerr error
	_ = m.phase("commit", func() error {
		if cerr = failpoint.Inject("source/commit-lost"); cerr != nil {
			return cerr // as if COMMIT never reached the target
		}
		var creply wire.CommitReply
		creply, cerr = c.Target.Commit(cctx, wire.CommitRequest{MigrationID: c.ID})
		if cerr == nil {
			cerr = failpoint.Inject("source/commit-reply-lost") // as if the target's answer was lost
		}
		m.rep.NetworkHook = creply.NetworkHook
		if cerr == nil {
			m.rep.DowntimeMs = ms(time.Since(m.frozen))
		}
		return cerr
	})
	if cerr != nil {
		decided, err := m.resolve(cctx, cerr)
		if err != nil {
			return err
		}
		if !decided {
			return cerr // the target did not commit: roll back (deferred)
		}
		m.rep.DowntimeMs = ms(time.Since(m.frozen))
	}
	committed = true
	m.r.Success()
	m.rep.Outcome = OutcomeCommitted
	if m.strategy == PostCopy {
		// Not under the commit's 2-minute bound: a big fill on a slow link takes longer, and
		// not cancellable: giving up serving pages loses the container. The stall watch ends it.
		if err := m.phase("residency", func() error { return m.waitResident(ctx) }); err != nil {
			// The target runs but lacks pages: keep the source's frozen copy for the operator.
			m.rep.Outcome = OutcomeCommittedIncomplete
			return fmt.Errorf("committed, but post-copy did not complete: %w. The target copy may fail when it touches memory it lacks; the source copy stays frozen on %s (its memory is intact)", err, c.Source.Host())
		}
	}
	_ = m.phase("retire-source", func() error {
		var errs []error
		if err := c.Source.Retire(cctx, c.Container); err != nil {
			errs = append(errs, fmt.Errorf("remove the source copy: %w", err))
		}
		for _, pm := range mounts {
			if err := pm.driver.Commit(cctx, pm.mount); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", pm.Driver, pm.Name, err))
			}
		}
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			// The migration is committed; leftovers on the source are reported, not fatal.
			m.log.Error("cleanup after commit", "err", err)
			m.rep.Error = "committed; cleanup on the source failed: " + err.Error()
		}
		return nil
	})
	return nil
}

// dumpToPageServer dumps with the pages going straight to a page server on the target, through
// a stream: nothing of the memory touches this host's disk, and sending overlaps dumping.
func (m *run) dumpToPageServer(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	ours, theirs, err := relay.Pair()
	if err != nil {
		return nil, err
	}
	st, sum, err := m.streamPages(ctx, "pages", ours, func() (*checkpoint.DumpStats, error) {
		spec.PageServer = theirs
		st, err := m.cfg.Source.Dump(ctx, m.cfg.Container, spec)
		theirs.Close() // CRIU has exited: this was the last copy of its end
		return st, err
	})
	if err != nil {
		return nil, err
	}
	m.pages = sum
	return st, nil
}

// streamPages relays a page server socket (ours; CRIU has the other end) to a new pages
// stream called name while dump runs, and returns what went through. When dump returns,
// CRIU has had every page acknowledged by the target's page server.
func (m *run) streamPages(ctx context.Context, name string, ours *os.File, dump func() (*checkpoint.DumpStats, error)) (*checkpoint.DumpStats, *wire.StreamSum, error) {
	c := m.cfg
	defer ours.Close()
	ps, err := c.Target.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamPages, Name: name})
	if err != nil {
		return nil, nil, err
	}
	defer ps.Close()
	type result struct {
		sum relay.Sum
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := relay.Run(ours, ps)
		// If the stream ended first (the target died), CRIU must not block writing into a socket
		// nobody reads: shutting it down makes the dump fail, and the migration roll back.
		_ = unix.Shutdown(int(ours.Fd()), unix.SHUT_RDWR)
		done <- result{sum, err}
	}()
	st, derr := dump()
	// The round is over, but CRIU (a pre-copy session) may still hold its end: stop reading it,
	// which ends the stream, and so the target's page server.
	_ = unix.Shutdown(int(ours.Fd()), unix.SHUT_RD)
	r := <-done
	m.rep.addStream(name, r.sum.Bytes)
	if derr != nil {
		return nil, nil, derr
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("streaming pages to %s: %w", c.Target.Host(), r.err)
	}
	return st, &wire.StreamSum{Bytes: r.sum.Bytes, Checksum: r.sum.Checksum}, nil
}

type lazyResult struct {
	st  *checkpoint.DumpStats
	sum relay.Sum
	err error
}

// startLazyDump starts post-copy's dump: everything but the memory is written locally; the
// memory stays in the frozen tasks and is served, through the "lazy" stream, to the target's
// lazy-pages daemon until it has every page. It returns once the image files are complete.
func (m *run) startLazyDump(ctx context.Context, spec DumpSpec) error {
	c := m.cfg
	ls, err := c.Target.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamLazy, Name: "pages"})
	if err != nil {
		return err
	}
	ours, theirs, err := relay.Pair()
	if err != nil {
		ls.Close()
		return err
	}
	relayed := make(chan relayResult, 1)
	go func() {
		sum, err := relay.Run(ours, countingStream{ls, &m.lazyBytes})
		ours.Close() // the stream ended: a dump still serving must stop, not block
		ls.Close()
		relayed <- relayResult{sum, err}
	}()
	ready := make(chan struct{})
	spec.PageServer, spec.LazyPages, spec.Ready = theirs, true, ready
	m.lazy = make(chan lazyResult, 1)
	go func() {
		st, err := c.Source.Dump(context.WithoutCancel(ctx), c.Container, spec)
		theirs.Close()
		r := <-relayed
		m.lazy <- lazyResult{st, r.sum, errors.Join(err, r.err)}
	}()
	// Until the commit, a rollback must stop the serving dump (it leaves the tasks frozen as they
	// were) before the source is thawed.
	m.r.Add("stop serving pages", func(context.Context) error {
		ls.Close()
		<-m.lazy
		return nil
	})
	select {
	case <-ready:
		return nil
	case r := <-m.lazy:
		m.lazy <- r
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("the lazy dump ended before its images were ready: %w", errdefs.ErrTransient)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errFillStalled: post-copy's fill moved nothing for the stall window.
var errFillStalled = errors.New("post-copy's fill stalled")

// watchStall returns errFillStalled (wrapped) once progress() has not changed for stall, checking
// every tick; nil when ctx ends first.
func watchStall(ctx context.Context, progress func() int64, stall, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	last, since := progress(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if p := progress(); p != last {
				last, since = p, now
			} else if now.Sub(since) >= stall {
				return fmt.Errorf("%w: no byte moved between the hosts for %s (%d bytes in all; the target's lazy-pages log says why)", errFillStalled, stall, last)
			}
		}
	}
}

// countingStream adds the bytes it carries, both ways, to n.
type countingStream struct {
	relay.Stream
	n *atomic.Int64
}

func (s countingStream) Read(p []byte) (int, error) {
	k, err := s.Stream.Read(p)
	s.n.Add(int64(k))
	return k, err
}

func (s countingStream) Write(p []byte) (int, error) {
	k, err := s.Stream.Write(p)
	s.n.Add(int64(k))
	return k, err
}

type relayResult struct {
	sum relay.Sum
	err error
}

// waitResident waits until the target has every page and the source's lazy dump has ended, or
// until the fill stalls. Cancelling ctx (Ctrl-C) does not end the wait, it only says why.
func (m *run) waitResident(interrupt context.Context) error {
	c := m.cfg
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(interrupt))
	defer cancel(nil)
	stall := cmp.Or(c.FillStall, DefaultFillStall)
	go func() {
		select {
		case <-interrupt.Done():
			m.log.Warn("interrupted, but post-copy is filling the target's memory: stopping now would lose the container; waiting until every page has moved (or none has for the stall window)", "stall", stall)
		case <-ctx.Done():
		}
	}()
	go func() {
		if err := watchStall(ctx, m.lazyBytes.Load, stall, time.Second); err != nil {
			cancel(err)
		}
	}()
	_, terr := c.Target.Resident(ctx, wire.ResidentRequest{MigrationID: c.ID})
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	var r lazyResult
	select {
	case r = <-m.lazy:
	case <-ctx.Done():
		return errors.Join(terr, context.Cause(ctx))
	}
	m.rep.addStream("pages", r.sum.Bytes)
	m.rep.ResidencyMs = m.rep.since(time.Now()) - m.rep.since(m.frozen)
	if r.st != nil {
		// Not CRIU's frozen_time: a lazy dump does not time its freeze meaningfully (it reported
		// minutes for a move that took seconds); the report's downtime is ferry's own measure.
		m.rep.CRIU.PagesWritten, m.rep.CRIU.PagesLazy = r.st.PagesWritten, r.st.PagesLazy
	}
	if terr != nil {
		return fmt.Errorf("the target's lazy-pages daemon: %w", terr)
	}
	if r.err != nil {
		return fmt.Errorf("the source's lazy dump: %w", r.err)
	}
	return nil
}

// localImages measures what the dumps wrote on this host (the images, and pre-copy's rounds;
// not CRIU's logs): bytes, and how many page files.
func localImages(dir string) (int64, int) {
	var n int64
	pages := 0
	dirs, _ := filepath.Glob(filepath.Join(dir, "pre-*"))
	for _, d := range append(dirs, filepath.Join(dir, "images")) {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
			if strings.HasPrefix(e.Name(), "pages-") {
				pages++
			}
		}
	}
	return n, pages
}

// sendImage ships the container's image content to a target that lacks it (only the blobs it
// lacks); the target checks every blob against its digest, then creates and unpacks the image.
func (m *run) sendImage(ctx context.Context) error {
	c, rec := m.cfg, m.sc.Record
	target, blobs, err := c.Source.ImageBlobs(ctx, rec.Image)
	if err != nil {
		return err
	}
	reply, err := c.Target.Image(ctx, wire.ImageRequest{MigrationID: c.ID, Namespace: rec.Namespace, Name: rec.Image,
		Snapshotter: rec.Snapshotter, Target: target, Blobs: blobs})
	if err != nil {
		return fmt.Errorf("ship image %s: %w", rec.Image, err)
	}
	var send []wire.Descriptor
	for _, b := range blobs {
		if slices.Contains(reply.Missing, b.Digest) {
			send = append(send, b)
		}
	}
	s, err := c.Target.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamBlobs, Name: "image"})
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := blobstream.Send(ctx, s, send, func(d wire.Descriptor) (io.ReadCloser, error) { return c.Source.OpenBlob(ctx, d) })
	m.rep.addStream("image", n)
	if err != nil {
		return fmt.Errorf("ship image %s: %w", rec.Image, err)
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	env, err := wire.NewConnRW(s, io.Discard, nil).Recv()
	if err != nil {
		return fmt.Errorf("ship image %s: no answer from the target: %w", rec.Image, err)
	}
	if env.Error != nil {
		return fmt.Errorf("ship image %s: target: %w", rec.Image, env.Error)
	}
	m.log.Info("image shipped", "image", rec.Image, "blobs", len(send), "bytes", n)
	return nil
}

// resolve learns the outcome of a COMMIT whose answer was lost. It returns (true, nil) if the
// target committed, (false, nil) if it certainly did not (so rolling back is safe), or an
// ErrInDoubt error if it cannot tell: then the source stays frozen and its checkpoint stays.
func (m *run) resolve(ctx context.Context, commitErr error) (bool, error) {
	c := m.cfg
	var re *wire.RemoteError
	if errors.As(commitErr, &re) {
		// The target answered: it refused to commit (it was not ready). It did not commit.
		return false, nil
	}
	m.log.Warn("COMMIT unanswered: asking the target", "err", commitErr)
	var last error
	deadline := time.Now().Add(c.ResolveTimeout)
	wait := c.ResolveTimeout / 30
	if err := failpoint.Inject("source/target-unreachable"); err != nil {
		last, deadline = err, time.Now()
	}
	for time.Now().Before(deadline) {
		st, err := c.Target.Status(ctx, c.ID)
		if err == nil {
			switch st {
			case "committed":
				return true, nil
			case "absent":
				return false, nil
			}
			// Not committed yet: make sure it never will be.
			got, err := c.Target.Abort(ctx, wire.AbortRequest{MigrationID: c.ID, Reason: "commit unanswered"})
			switch {
			case got == "committed":
				return true, nil
			case err == nil:
				return false, nil
			}
			last = err
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(wait):
		}
		wait = min(2*wait, c.ResolveTimeout/4)
	}
	m.rep.Outcome = OutcomeInDoubt
	perr := writePending(c.StateDir, Pending{ID: c.ID, Container: c.Container, Namespace: c.Namespace, Source: c.Source.Host(),
		Target: cmp.Or(c.TargetAddr, c.Target.Host()), Checkpoint: m.dir, Since: time.Now().UTC()})
	if perr == nil {
		return false, fmt.Errorf("%w: the COMMIT to %s got no answer (%v) and its state cannot be read (%v). "+
			"The source copy on %s stays frozen. Run `ferry recover %s` once %s is reachable: it asks the target "+
			"what it decided and finishes that on both sides", ErrInDoubt, c.Target.Host(), commitErr, last, c.Source.Host(), c.ID, c.Target.Host())
	}
	m.log.Error("cannot record the pending migration for ferry recover", "err", perr)
	return false, fmt.Errorf("%w: the COMMIT to %s got no answer (%v) and its state cannot be read (%v). "+
		"The source copy on %s stays frozen and its checkpoint stays in %s. On %s run `ferry-receiver status %s`: "+
		"if it says committed, remove the source copy (ctr -n %s task kill -s KILL %s; ctr -n %s container rm %s); "+
		"otherwise run `ferry-receiver abort %s` there and resume the source (ctr -n %s task resume %s)",
		ErrInDoubt, c.Target.Host(), commitErr, last, c.Source.Host(), m.dir, c.Target.Host(), c.ID,
		c.Namespace, c.Container, c.Namespace, c.Container, c.ID, c.Namespace, c.Container)
}

// preflight checks both sides and refuses with every reason found. It changes nothing.
func (m *run) preflight(ctx context.Context) error {
	c := m.cfg
	sc, err := c.Source.Describe(ctx, c.Container)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return m.refuse([]string{fmt.Sprintf("there is no container %q in namespace %q on %s", c.Container, c.Namespace, c.Source.Host())})
		}
		return err
	}
	m.sc = sc
	if sc.Record.Network != nil {
		m.rep.Addresses = network.Addresses(sc.Record.Network)
	}
	var problems []string
	if sc.Status != "running" {
		st := sc.Status
		if st == "" {
			st = "not started (no task)"
		}
		problems = append(problems, fmt.Sprintf("container %q on %s is %s: ferry moves running containers", c.Container, c.Source.Host(), st))
	}
	problems = append(problems, SpecProblems(sc.Spec)...)
	problems = append(problems, sc.Problems...)
	facts := c.Source.Facts(ctx)
	if need := sc.MemoryBytes + 64<<20; facts.FreeBytes < need {
		problems = append(problems, fmt.Sprintf("%s has %s free in %s for the checkpoint, it needs about %s (hint: free space there)",
			c.Source.Host(), humanBytes(facts.FreeBytes), c.StateDir, humanBytes(need)))
	}
	for _, p := range SourceProblems(facts) {
		problems = append(problems, p.Message+hint(p.Hint))
	}
	reply, err := c.Target.Preflight(ctx, wire.PreflightRequest{
		MigrationID: c.ID, Container: sc.Record, Source: facts, ImageBytes: sc.MemoryBytes, FSBytes: sc.FSBytes,
		Volumes: sc.Volumes,
	})
	if err != nil {
		return fmt.Errorf("preflight on %s: %w", c.Target.Host(), err)
	}
	for _, p := range reply.Problems {
		problems = append(problems, p.Message+hint(p.Hint))
	}
	m.shipImage = reply.ImageMissing
	in := StrategyInput{Requested: c.Strategy, MaxDowntime: c.MaxDowntime, Source: facts, Target: reply.Target, MemoryBytes: sc.MemoryBytes}
	if c.Strategy == Auto {
		// The best of three short probes: a cold or disturbed one only ever reads low.
		for i := 0; i < 3; i++ {
			bps, err := c.Target.Probe(ctx, 24<<20)
			if err != nil {
				m.log.Warn("link probe failed", "err", err)
				break
			}
			in.LinkBps = max(in.LinkBps, bps)
		}
		if in.LinkBps > 0 && m.rep.BWLimit > 0 {
			in.LinkBps = min(in.LinkBps, float64(m.rep.BWLimit)) // the probe is never limited
		}
		m.rep.LinkMBps = in.LinkBps / 1e6
	}
	choice, err := Choose(in)
	if err != nil {
		problems = append(problems, err.Error())
	}
	m.strategy, m.rep.Strategy, m.rep.StrategyReason = choice.Strategy, choice.Strategy, choice.Reason
	m.emit(Event{Kind: EventPlan, MemoryBytes: sc.MemoryBytes, FSBytes: sc.FSBytes, Strategy: choice.Strategy})
	if choice.Estimate > 0 {
		m.rep.EstimatedStopCopyMs = ms(choice.Estimate)
	}
	m.plan = Plan(c.Source.Host(), c.Target.Host(), sc.Volumes, reply.Volumes)
	m.rep.FSPlan = m.plan
	var names []string
	for _, pm := range m.plan {
		if !slices.Contains(names, pm.Driver) {
			names = append(names, pm.Driver)
		}
		if c.Drivers[pm.Driver] == nil {
			problems = append(problems, fmt.Sprintf("the plan needs the %s driver, which this ferry does not have", pm.Driver))
		}
	}
	m.rep.FSDriver = strings.Join(names, "+")
	if len(problems) > 0 {
		return m.refuse(problems)
	}
	return nil
}

func hint(h string) string {
	if h == "" {
		return ""
	}
	return " (" + h + ")"
}

func (m *run) refuse(problems []string) error {
	m.rep.Outcome = OutcomeRefused
	m.rep.Problems = problems
	return fmt.Errorf("%w: %s", ErrRefused, strings.Join(problems, "; "))
}

// SourceProblems checks the source's own facts (pure).
func SourceProblems(f wire.HostFacts) []wire.Problem { return hostinfo.Problems(f) }

func humanBytes(n uint64) string { return HumanBytes(int64(n)) }
