package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/sftpdir"
	"github.com/ferry-project/ferry/transport/wire"
)

// calls records what the fakes were asked to do, in order.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(s string) { c.mu.Lock(); c.log = append(c.log, s); c.mu.Unlock() }

// wantOrder checks the calls were want, in order, plus exactly one "finalsync" somewhere between
// "freeze" and "restore": the final filesystem sync runs beside the dump.
func (c *calls) wantOrder(t *testing.T, want ...string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	fs := slices.Index(c.log, "finalsync")
	rest := slices.DeleteFunc(slices.Clone(c.log), func(s string) bool { return s == "finalsync" })
	if !slices.Equal(rest, want) || fs < 0 || len(rest) != len(c.log)-1 ||
		fs < slices.Index(c.log, "freeze") || fs > slices.Index(c.log, "restore") {
		t.Fatalf("calls %v, want %v with one finalsync between freeze and restore", c.log, want)
	}
}

func (c *calls) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.log, s)
}

type fakeSource struct {
	*calls
	status    string
	softDirty bool
	rounds    []uint64 // pre-copy: pages each pre-dump writes
	failRound int      // pre-copy: the pre-dump that fails (1-based; 0 none)
	sess      *fakeSession
	volume    string // a volume's directory, if set
}

func (s *fakeSource) Host() string { return "a" }
func (s *fakeSource) Facts(context.Context) wire.HostFacts {
	return wire.HostFacts{Host: "a", CRIUVersion: 40101, Rsync: "3.2", FreeBytes: 1 << 40, SoftDirty: s.softDirty}
}

// PreCopy keeps duplicates of the sockets, as CRIU's swrk does, until Close.
func (s *fakeSource) PreCopy(_ context.Context, _ string, ps []*os.File) (PreCopySession, error) {
	s.add("precopy-start")
	fs := &fakeSession{src: s}
	for _, f := range ps {
		fd, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			return nil, err
		}
		fs.socks = append(fs.socks, os.NewFile(uintptr(fd), "ps"))
	}
	s.sess = fs
	return fs, nil
}

type fakeSession struct {
	src    *fakeSource
	socks  []*os.File
	next   int
	closed bool
	specs  []DumpSpec
}

func (f *fakeSession) PreDump(_ context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	f.src.add("predump")
	f.specs = append(f.specs, spec)
	f.next++
	if f.next == f.src.failRound {
		return nil, errors.New("criu pre-dump failed")
	}
	if _, err := f.socks[f.next-1].Write([]byte("pages")); err != nil {
		return nil, err
	}
	return &checkpoint.DumpStats{PagesWritten: f.src.rounds[f.next-1]}, nil
}

func (f *fakeSession) Dump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	f.specs = append(f.specs, spec)
	spec.PageServer = f.socks[len(f.socks)-1]
	return f.src.Dump(ctx, "", spec)
}

func (f *fakeSession) Close() error {
	f.src.add("precopy-end")
	f.closed = true
	closeAll(f.socks)
	return nil
}
func (s *fakeSource) Describe(context.Context, string) (*SourceContainer, error) {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
	sc := &SourceContainer{Record: wire.Container{ID: "web"}, Spec: spec, Status: s.status, WritableDir: "/x"}
	if s.volume != "" {
		sc.Volumes = []wire.Volume{{Name: "vol-1", Path: s.volume, Destination: "/data"}}
	}
	return sc, nil
}
func (s *fakeSource) Freeze(context.Context, string) error { s.add("freeze"); return nil }
func (s *fakeSource) Thaw(context.Context, string) error   { s.add("thaw"); return nil }
func (s *fakeSource) Dump(_ context.Context, _ string, spec DumpSpec) (*checkpoint.DumpStats, error) {
	s.add("dump")
	if spec.PageServer != nil {
		_, _ = spec.PageServer.Write([]byte("pages"))
	}
	return &checkpoint.DumpStats{PagesWritten: 10}, os.WriteFile(filepath.Join(spec.ImagesDir, "core-1.img"), []byte("c"), 0o600)
}
func (s *fakeSource) Retire(context.Context, string) error { s.add("retire"); return nil }
func (s *fakeSource) ImageBlobs(context.Context, string) (wire.Descriptor, []wire.Descriptor, error) {
	return wire.Descriptor{}, nil, errors.New("no images in this fake")
}
func (s *fakeSource) OpenBlob(context.Context, wire.Descriptor) (io.ReadCloser, error) {
	return nil, errors.New("no images in this fake")
}

// fakeTarget fails where told to.
type fakeTarget struct {
	*calls
	restored   wire.RestoreRequest
	problems   []wire.Problem
	failAt     string // prepare, restore
	commitErr  error
	status     []string // successive Status answers ("" = error)
	abortState string
}

func (t *fakeTarget) Host() string { return "b" }
func (t *fakeTarget) Preflight(context.Context, wire.PreflightRequest) (wire.PreflightReply, error) {
	return wire.PreflightReply{Problems: t.problems}, nil
}
func (t *fakeTarget) Prepare(context.Context, wire.PrepareRequest) error {
	t.add("prepare")
	if t.failAt == "prepare" {
		return errors.New("prepare failed")
	}
	return nil
}
func (t *fakeTarget) Resident(context.Context, wire.ResidentRequest) (wire.ResidentReply, error) {
	return wire.ResidentReply{}, nil
}
func (t *fakeTarget) Probe(context.Context, int64) (float64, error) { return 500e6, nil }
func (t *fakeTarget) Image(context.Context, wire.ImageRequest) (wire.ImageReply, error) {
	return wire.ImageReply{}, errors.New("no images in this fake")
}
func (t *fakeTarget) OpenStream(context.Context, wire.StreamHeader) (transport.Stream, error) {
	return nil, errors.New("no streams in this fake")
}
func (t *fakeTarget) Restore(_ context.Context, req wire.RestoreRequest) (wire.RestoreReply, error) {
	t.add("restore")
	t.restored = req
	if t.failAt == "restore" {
		return wire.RestoreReply{}, errors.New("restore failed")
	}
	return wire.RestoreReply{PagesRestored: 10}, nil
}
func (t *fakeTarget) Commit(context.Context, wire.CommitRequest) (wire.CommitReply, error) {
	t.add("commit")
	return wire.CommitReply{}, t.commitErr
}
func (t *fakeTarget) Abort(context.Context, wire.AbortRequest) (string, error) {
	t.add("abort")
	if t.abortState == "committed" {
		return "committed", errors.New("committed")
	}
	return "aborted", nil
}
func (t *fakeTarget) Status(context.Context, string) (string, error) {
	t.add("status")
	if len(t.status) == 0 {
		return "", errors.New("unreachable")
	}
	st := t.status[0]
	if len(t.status) > 1 {
		t.status = t.status[1:]
	}
	if st == "" {
		return "", errors.New("unreachable")
	}
	return st, nil
}

type fakeFS struct{ *calls }

func (f fakeFS) Name() string                                  { return "fake" }
func (f fakeFS) Prepare(context.Context, snapshot.Mount) error { return nil }
func (f fakeFS) PreSync(context.Context, snapshot.Mount) (snapshot.Stats, error) {
	f.add("presync")
	return snapshot.Stats{Bytes: 1}, nil
}
func (f fakeFS) FinalSync(context.Context, snapshot.Mount) (snapshot.Stats, error) {
	f.add("finalsync")
	return snapshot.Stats{Bytes: 1}, nil
}
func (f fakeFS) Commit(context.Context, snapshot.Mount) error { f.add("fs-commit"); return nil }
func (f fakeFS) Abort(context.Context, snapshot.Mount) error  { f.add("fs-abort"); return nil }

// imagesTarget receives the checkpoint with the real sftp server, into a temp directory.
type imagesTarget struct{ *fakeTarget }

func (t imagesTarget) OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error) {
	if h.Kind == wire.StreamPages {
		a, b := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, b); b.Close() }()
		return closingStream{a}, nil
	}
	a, b := net.Pipe()
	dir, err := os.MkdirTemp("", "ferry-images-")
	if err != nil {
		return nil, err
	}
	go func() {
		defer os.RemoveAll(dir)
		_ = sftpdir.Serve(b, dir)
	}()
	return pipeStream{a}, nil
}

type pipeStream struct{ net.Conn }

func (p pipeStream) CloseWrite() error { return nil }

// closingStream ends the whole pipe on CloseWrite (net.Pipe has no half-close): the page
// server fake reads to the end, then the relay's other direction ends too.
type closingStream struct{ net.Conn }

func (p closingStream) CloseWrite() error { return p.Conn.Close() }

func setup(t *testing.T, tgt *fakeTarget) (Config, *calls) {
	c := &calls{}
	tgt.calls = c
	return Config{
		ID: "m-test0001", Container: "web", Namespace: "default",
		Source: &fakeSource{calls: c, status: "running"}, Target: tgt, Drivers: map[string]snapshot.Driver{"rsync": fakeFS{c}},
		StateDir: t.TempDir(), RunDir: t.TempDir(), ResolveTimeout: 300 * time.Millisecond,
	}, c
}

func TestRefusedChangesNothing(t *testing.T) {
	cfg, c := setup(t, &fakeTarget{problems: []wire.Problem{{Message: `a container named "web" already exists on b`}}})
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrRefused) || rep.Outcome != OutcomeRefused {
		t.Fatalf("err=%v outcome=%s", err, rep.Outcome)
	}
	if len(c.log) != 0 {
		t.Fatalf("a refused migration did %v", c.log)
	}
	if !strings.Contains(rep.Text(), "already exists") {
		t.Fatalf("report does not name the cause: %s", rep.Text())
	}
}

func TestNotRunningIsRefused(t *testing.T) {
	cfg, c := setup(t, &fakeTarget{})
	cfg.Source.(*fakeSource).status = "paused"
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "paused") || len(c.log) != 0 {
		t.Fatalf("err=%v calls=%v", err, c.log)
	}
}

// A failure before COMMIT thaws the source and aborts the target.
func TestFailureBeforeCommitRollsBack(t *testing.T) {
	for _, at := range []string{"prepare", "restore"} {
		tgt := &fakeTarget{failAt: at}
		cfg, c := setup(t, tgt)
		cfg.Target = imagesTarget{tgt}
		rep, err := Run(context.Background(), cfg)
		if err == nil || rep.Outcome != OutcomeRolledBack {
			t.Fatalf("%s: err=%v outcome=%s", at, err, rep.Outcome)
		}
		if !c.has("abort") || c.has("commit") || c.has("retire") {
			t.Fatalf("%s: calls %v", at, c.log)
		}
		if at == "restore" && !c.has("thaw") {
			t.Fatalf("%s: source not thawed: %v", at, c.log)
		}
		if _, err := os.Stat(filepath.Join(cfg.RunDir, "migrations", cfg.ID)); !os.IsNotExist(err) {
			t.Fatalf("%s: local checkpoint left behind", at)
		}
	}
}

func TestCommitted(t *testing.T) {
	tgt := &fakeTarget{}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if err != nil || rep.Outcome != OutcomeCommitted || rep.DowntimeMs <= 0 {
		t.Fatalf("err=%v outcome=%s downtime=%v", err, rep.Outcome, rep.DowntimeMs)
	}
	c.wantOrder(t, "prepare", "presync", "freeze", "dump", "restore", "commit", "retire", "fs-commit")
}

// The target refused COMMIT explicitly: it did not commit, rolling back is safe.
func TestCommitRefusedRollsBack(t *testing.T) {
	tgt := &fakeTarget{commitErr: &wire.RemoteError{Code: "precondition", Message: "not ready"}}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if err == nil || rep.Outcome != OutcomeRolledBack || !c.has("thaw") || c.has("retire") || c.has("status") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
}

// COMMIT's answer is lost; the target says it committed: the source is retired, never thawed.
func TestLostCommitResolvedCommitted(t *testing.T) {
	tgt := &fakeTarget{commitErr: errors.New("connection lost"), status: []string{"", "committed"}}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if err != nil || rep.Outcome != OutcomeCommitted || c.has("thaw") || !c.has("retire") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
}

// COMMIT's answer is lost; the target had not committed: it is aborted first, then the source
// is thawed.
func TestLostCommitResolvedNotCommitted(t *testing.T) {
	tgt := &fakeTarget{commitErr: errors.New("connection lost"), status: []string{"ready"}}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if err == nil || rep.Outcome != OutcomeRolledBack || !c.has("thaw") || c.has("retire") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
	if i, j := slices.Index(c.log, "abort"), slices.Index(c.log, "thaw"); i < 0 || j < i {
		t.Fatalf("source thawed before the target was aborted: %v", c.log)
	}
}

// Abort loses the race against a COMMIT that arrived: the target committed.
func TestLostCommitAbortFindsCommitted(t *testing.T) {
	tgt := &fakeTarget{commitErr: errors.New("connection lost"), status: []string{"ready"}, abortState: "committed"}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if err != nil || rep.Outcome != OutcomeCommitted || c.has("thaw") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
}

// Nothing can be learned: the source stays frozen with its checkpoint, nothing is retired.
func TestLostCommitInDoubt(t *testing.T) {
	tgt := &fakeTarget{commitErr: errors.New("connection lost")}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrInDoubt) || rep.Outcome != OutcomeInDoubt {
		t.Fatalf("err=%v outcome=%s", err, rep.Outcome)
	}
	if c.has("thaw") || c.has("retire") {
		t.Fatalf("in doubt, yet the source was touched: %v", c.log)
	}
	if _, err := os.Stat(filepath.Join(cfg.RunDir, "migrations", cfg.ID, "images", "core-1.img")); err != nil {
		t.Fatalf("the checkpoint must stay on disk: %v", err)
	}
	if !strings.Contains(err.Error(), "ferry recover "+cfg.ID) {
		t.Fatalf("the error does not say what to do: %v", err)
	}
	p, err := ListPending(cfg.StateDir)
	if err != nil || len(p) != 1 || p[0].ID != cfg.ID || p[0].Container != cfg.Container || p[0].Target == "" {
		t.Fatalf("the pending record for ferry recover: %+v %v", p, err)
	}
}

// Ctrl-C before COMMIT rolls back like any failure.
func TestCancelRollsBack(t *testing.T) {
	tgt := &fakeTarget{}
	cfg, c := setup(t, tgt)
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Drivers = map[string]snapshot.Driver{"rsync": cancelFS{fakeFS{c}, cancel}}
	cfg.Target = imagesTarget{tgt}
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || rep.Outcome != OutcomeRolledBack || !c.has("thaw") || !c.has("abort") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
}

// The final syncs of the writable layer and a volume run side by side: each waits until the
// other has started, which in a row would never happen.
func TestFinalSyncsRunTogether(t *testing.T) {
	tgt := &fakeTarget{}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	cfg.Source.(*fakeSource).volume = t.TempDir()
	fs := &barrierFS{fakeFS: fakeFS{c}, started: make(chan string, 2)}
	cfg.Drivers = map[string]snapshot.Driver{"rsync": fs}
	rep, err := Run(context.Background(), cfg)
	if err != nil || rep.Outcome != OutcomeCommitted {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
	if n := len(rep.FSPlan); n != 2 {
		t.Fatalf("the plan has %d mounts, want the writable layer and the volume: %+v", n, rep.FSPlan)
	}
}

type barrierFS struct {
	fakeFS
	started chan string
}

func (f *barrierFS) FinalSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	f.started <- m.Name
	deadline := time.After(5 * time.Second)
	for len(f.started) < 2 {
		select {
		case <-deadline:
			return snapshot.Stats{}, fmt.Errorf("%s: the other mount's final sync did not start beside it", m.Name)
		case <-ctx.Done():
			return snapshot.Stats{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return f.fakeFS.FinalSync(ctx, m)
}

type cancelFS struct {
	fakeFS
	cancel func()
}

func (f cancelFS) FinalSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	f.cancel()
	return snapshot.Stats{}, ctx.Err()
}

// Pre-copy iterates while the container runs until the rule stops it, each round into its own
// pages stream linked to the previous, then dumps the frozen container on top of the last.
func TestPreCopyCommitted(t *testing.T) {
	tgt := &fakeTarget{}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	src := cfg.Source.(*fakeSource)
	src.softDirty, src.rounds = true, []uint64{65536, 4096, 512, 100}
	cfg.Strategy = PreCopy
	cfg.PreCopy = PreCopyRule{MaxRounds: 4, GoalBytes: 2 << 20, MaxGrowth: 0.1}
	rep, err := Run(context.Background(), cfg)
	if err != nil || rep.Outcome != OutcomeCommitted || rep.Strategy != PreCopy {
		t.Fatalf("err=%v outcome=%s strategy=%s", err, rep.Outcome, rep.Strategy)
	}
	c.wantOrder(t, "prepare", "presync", "precopy-start", "predump", "predump", "predump", "freeze", "dump", "precopy-end", "restore", "commit", "retire", "fs-commit")
	p := rep.PreCopy
	if p == nil || len(p.Rounds) != 3 || !strings.Contains(p.Stop, "round 3 copied 2.0 MiB ≤ goal 2.0 MiB") || p.Rounds[1].PagesWritten != 4096 || p.Rounds[2].Bytes != 5 {
		t.Fatalf("pre-copy report %+v", p)
	}
	if len(tgt.restored.PreRounds) != 3 || tgt.restored.PreRounds[0].Bytes != 5 {
		t.Fatalf("restore request carries pre-rounds %+v", tgt.restored.PreRounds)
	}
	var parents []string
	for _, sp := range src.sess.specs {
		parents = append(parents, sp.Parent)
	}
	if !slices.Equal(parents, []string{"", "../pre-1", "../pre-2", "../pre-3"}) {
		t.Fatalf("parents %q", parents)
	}
	if !strings.Contains(rep.Text(), "pre-copy   3 round(s)") {
		t.Fatalf("text report: %s", rep.Text())
	}
}

// A failed pre-dump rolls back before anything was frozen: the session ends, the target is
// aborted, nothing stays on disk.
func TestPreCopyFailureRollsBack(t *testing.T) {
	tgt := &fakeTarget{}
	cfg, c := setup(t, tgt)
	cfg.Target = imagesTarget{tgt}
	src := cfg.Source.(*fakeSource)
	src.softDirty, src.rounds, src.failRound = true, []uint64{65536, 4096}, 2
	cfg.Strategy = PreCopy
	rep, err := Run(context.Background(), cfg)
	if err == nil || rep.Outcome != OutcomeRolledBack || !strings.Contains(err.Error(), "pre-copy round 2") {
		t.Fatalf("err=%v outcome=%s", err, rep.Outcome)
	}
	if !c.has("precopy-end") || !c.has("abort") || c.has("freeze") || c.has("restore") || !src.sess.closed {
		t.Fatalf("calls %v", c.log)
	}
	if _, err := os.Stat(filepath.Join(cfg.RunDir, "migrations", cfg.ID)); !os.IsNotExist(err) {
		t.Fatal("local pre-copy images left behind")
	}
}

// Without soft-dirty on the source, pre-copy is refused with the reason and nothing happens.
func TestPreCopyRefusedWithoutSoftDirty(t *testing.T) {
	cfg, c := setup(t, &fakeTarget{})
	cfg.Strategy = PreCopy
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "CONFIG_MEM_SOFT_DIRTY") || len(c.log) != 0 {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
}

// reportingTarget says what failed on its side, as the receiver does.
type reportingTarget struct {
	imagesTarget
	failures []string
}

func (t reportingTarget) Failures(context.Context, string) ([]string, error) { return t.failures, nil }

// The source sees only a broken stream; the target's account of it joins the error, before the
// rollback (which would forget it).
func TestFailureCarriesTheTargetsAccount(t *testing.T) {
	tgt := &fakeTarget{failAt: "restore"}
	cfg, c := setup(t, tgt)
	cfg.Target = reportingTarget{imagesTarget{tgt}, []string{`rsync of vol-1 failed: write failed on "/srv/x": No space left on device (28)`}}
	rep, err := Run(context.Background(), cfg)
	if err == nil || rep.Outcome != OutcomeRolledBack || !c.has("abort") {
		t.Fatalf("err=%v outcome=%s calls=%v", err, rep.Outcome, c.log)
	}
	want := `restore failed; on b: rsync of vol-1 failed: write failed on "/srv/x": No space left on device (28)`
	if !strings.Contains(err.Error(), want) || !strings.Contains(rep.Error, want) {
		t.Fatalf("error %q / report %q, want it to contain %q", err, rep.Error, want)
	}
}

func TestWatchStall(t *testing.T) {
	// Bytes that stop: a stall, reported with the window.
	var n atomic.Int64
	n.Store(7)
	start := time.Now()
	err := watchStall(context.Background(), n.Load, 50*time.Millisecond, 5*time.Millisecond)
	if !errors.Is(err, errFillStalled) || !strings.Contains(err.Error(), "50ms") {
		t.Fatalf("stopped bytes: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("stall reported after %s, before the 50ms window", d)
	}
	// Bytes that keep moving: no stall, however long the fill takes, until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	moving := func() int64 { return n.Add(1) }
	if err := watchStall(ctx, moving, 50*time.Millisecond, 5*time.Millisecond); err != nil {
		t.Errorf("moving bytes: %v", err)
	}
}

// residentTarget's Resident answers when filled is closed, or when its ctx ends.
type residentTarget struct {
	fakeTarget
	filled chan struct{}
}

func (t *residentTarget) Resident(ctx context.Context, _ wire.ResidentRequest) (wire.ResidentReply, error) {
	select {
	case <-t.filled:
		return wire.ResidentReply{}, nil
	case <-ctx.Done():
		return wire.ResidentReply{}, ctx.Err()
	}
}

// TestResidencyOutlivesInterrupt: Ctrl-C during post-copy's fill does not end the wait (leaving
// would lose the container); the fill's end does. A fill that stops moving ends it too.
func TestResidencyOutlivesInterrupt(t *testing.T) {
	tgt := &residentTarget{fakeTarget{calls: &calls{}}, make(chan struct{})}
	m := &run{cfg: Config{Target: tgt, FillStall: time.Hour}, log: slog.New(slog.DiscardHandler), rep: &Report{StartedAt: time.Now()}, lazy: make(chan lazyResult, 1)}
	interrupt, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- m.waitResident(interrupt) }()
	select {
	case err := <-done:
		t.Fatalf("the wait ended on the interrupt: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	m.lazy <- lazyResult{}
	close(tgt.filled)
	if err := <-done; err != nil {
		t.Fatalf("filled: %v", err)
	}

	// Nothing moves: the stall ends the wait, with the reason.
	tgt = &residentTarget{fakeTarget{calls: &calls{}}, make(chan struct{})}
	m = &run{cfg: Config{Target: tgt, FillStall: 50 * time.Millisecond}, log: slog.New(slog.DiscardHandler), rep: &Report{StartedAt: time.Now()}, lazy: make(chan lazyResult, 1)}
	if err := m.waitResident(context.Background()); !errors.Is(err, errFillStalled) {
		t.Fatalf("stalled fill: %v", err)
	}
}
