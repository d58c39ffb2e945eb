// Package receiver is ferry-receiver: the target side of a migration. It is started by ferry over
// SSH, speaks the wire protocol on its stdin/stdout, accepts bulk streams on a private unix
// socket, and does only ferry's own operations: create the container, receive its files into
// the directories it chose, restore it, hold it frozen until COMMIT, or undo everything.
package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/identifiers"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/config"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/internal/failpoint"
	"github.com/ferry-project/ferry/internal/hostinfo"
	"github.com/ferry-project/ferry/network"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/transport/sftpdir"
	"github.com/ferry-project/ferry/transport/wire"
)

// Config configures a receiver.
type Config struct {
	ConfigFile        string // /etc/ferry/ferry.toml
	StateDir          string // /var/lib/ferry: migrations/<id>/{journal.json,images,work}
	RunDir            string // /run/ferry: stream sockets
	ContainerdAddress string
	Version           string
	Log               *slog.Logger
}

func (c *Config) defaults() {
	if c.ConfigFile == "" {
		c.ConfigFile = config.DefaultPath
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/ferry"
	}
	if c.RunDir == "" {
		c.RunDir = "/run/ferry"
	}
	if c.ContainerdAddress == "" {
		c.ContainerdAddress = runtime.DefaultAddress
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Features this receiver offers.
var Features = []string{wire.FeatureFSRsync, wire.FeatureImagesSFTP, wire.FeatureStreamLocal, wire.FeatureCommitFrozen, wire.FeatureFacts, wire.FeatureRsyncItemize}

// server is one session (one migration at most).
type server struct {
	cfg   Config
	log   *slog.Logger
	token string
	sock  string
	ln    net.Listener

	conf config.Config

	mu    sync.Mutex // guards everything below and serialises decisions
	hello bool
	rt    *runtime.Client
	j     *Journal
	rec   wire.Container
	plan  []wire.Mount
	image *wire.ImageRequest // an image whose blobs are being shipped
	// imageLock is held from startImage until that image is imported (or the migration ends):
	// concurrent migrations shipping the same image to this host take turns, and the later
	// finds it present. imagePresent: it was, so the blobs stream carries nothing.
	imageLock    *os.File
	imagePresent bool
	pages        *pagesResult   // the page server's stream, once it started
	preRounds    []*pagesResult // pre-copy: each pre-dump's page server, in order (dirs pre-1, pre-2, …)
	lazyConn     lazyEnd        // post-copy: the stream to the source's lazy dump, until the restore
	lazy         *lazyDaemon    // post-copy: the lazy-pages daemon, once started
	// failures lists what failed in the streams, for the source (TypeFailures).
	failures []string
	// rsyncStreams counts the rsync streams served (failpoint builds name faults by it).
	rsyncStreams int
	mounts       map[string]string // mount name → target directory (rsync)
	datasets     map[string]string // mount name → target dataset (zfs)
	imagesDir    string
	workDir      string
	streams      map[net.Conn]bool
	// bg is the work left after a commit (removing the checkpoint files); Serve waits for it
	// before it returns, so that the files do not outlive the process that should remove them.
	bg sync.WaitGroup
}

// Serve runs one session on in/out until the source closes it. A migration that is not
// committed when the session ends is undone.
func Serve(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	cfg.defaults()
	conf, err := config.Load(cfg.ConfigFile)
	if err != nil {
		return err
	}
	s := &server{cfg: cfg, conf: conf, log: cfg.Log, streams: map[net.Conn]bool{}}
	defer s.bg.Wait()
	defer s.close()
	if _, err = io.WriteString(out, wire.Preamble); err != nil {
		return err
	}
	conn := wire.NewConnRW(in, out, nil)
	msgs := make(chan wire.Envelope)
	recvErr := make(chan error, 1)
	go func() {
		for {
			env, err := conn.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			msgs <- env
		}
	}()
	for {
		var env wire.Envelope
		select {
		case env = <-msgs:
		case err := <-recvErr:
			s.disconnected(err)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			s.disconnected(ctx.Err())
			return ctx.Err()
		}
		body, after, err := s.handle(ctx, env)
		if err != nil {
			s.log.Warn("request failed", "type", env.Type, "err", err)
			if serr := conn.SendError(env.Type, err); serr != nil {
				s.disconnected(serr)
				return serr
			}
			continue
		}
		if err := conn.Send(env.Type, body); err != nil {
			s.disconnected(err)
			return err
		}
		if after != nil {
			after()
		}
	}
}

func (s *server) handle(ctx context.Context, env wire.Envelope) (body any, after func(), err error) {
	if env.Type != wire.TypeHello && !s.hello {
		return nil, nil, fmt.Errorf("%s before hello: %w", env.Type, errdefs.ErrProtocol)
	}
	switch env.Type {
	case wire.TypeHello:
		var h wire.Hello
		if err := env.Decode(&h); err != nil {
			return nil, nil, err
		}
		r, err := s.helloReply(h)
		return r, nil, err
	case wire.TypePreflight:
		var req wire.PreflightRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		r, err := s.preflight(ctx, req)
		return r, nil, err
	case wire.TypePrepare:
		var req wire.PrepareRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		return wire.PrepareReply{}, nil, s.prepare(ctx, req)
	case wire.TypeImage:
		var req wire.ImageRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		r, err := s.startImage(ctx, req)
		return r, nil, err
	case wire.TypeResident:
		var req wire.ResidentRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		r, err := s.resident(ctx, req)
		return r, nil, err
	case wire.TypeRestore:
		var req wire.RestoreRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		r, err := s.restore(ctx, req)
		return r, nil, err
	case wire.TypeCommit:
		var req wire.CommitRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		return s.commit(ctx, req)
	case wire.TypeFailures:
		return wire.FailuresReply{Failures: s.streamFailures()}, nil, nil
	case wire.TypeFacts:
		var req wire.FactsRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		r, err := s.facts(ctx, req)
		return r, nil, err
	case wire.TypeAbort:
		var req wire.AbortRequest
		if err := env.Decode(&req); err != nil {
			return nil, nil, err
		}
		return wire.AbortReply{}, nil, s.abort(ctx, req.Reason)
	}
	return nil, nil, fmt.Errorf("unknown request %q: %w", env.Type, errdefs.ErrProtocol)
}

func (s *server) helloReply(h wire.Hello) (wire.Hello, error) {
	host, _ := os.Hostname()
	reply := wire.Hello{Protocol: wire.ProtocolVersion, Version: s.cfg.Version, Host: host, Features: Features}
	if s.conf.ZFSParent != "" {
		reply.Features = append(append([]string{}, Features...), wire.FeatureFSZFS)
	}
	if failpoint.Inject("receiver/old-protocol") != nil {
		reply.Protocol, reply.Version = 0, "0.0.0-test"
		return reply, nil
	}
	if h.Protocol != wire.ProtocolVersion {
		// Answer with our version so that the source can say what to install; accept nothing else.
		return reply, nil
	}
	if err := s.listen(); err != nil {
		return reply, err
	}
	s.hello = true
	reply.StreamSocket, reply.StreamToken = s.sock, s.token
	return reply, nil
}

func (s *server) runtime(ctx context.Context, ns string) (*runtime.Client, error) {
	if err := identifiers.Validate(ns); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, errors.Join(err, errdefs.ErrInvalid))
	}
	if s.rt != nil {
		if s.rt.Namespace() != ns {
			return nil, fmt.Errorf("one session serves one namespace: %w", errdefs.ErrInvalid)
		}
		return s.rt, nil
	}
	rt, err := runtime.Connect(ctx, s.cfg.ContainerdAddress, ns)
	if err != nil {
		return nil, err
	}
	s.rt = rt
	return rt, nil
}

// preflight reports every reason this host cannot take the container. It changes nothing.
func (s *server) preflight(ctx context.Context, req wire.PreflightRequest) (wire.PreflightReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := failpoint.Inject("receiver/preflight"); err != nil {
		return wire.PreflightReply{}, err
	}
	c := req.Container
	if err := validContainer(c); err != nil {
		return wire.PreflightReply{}, err
	}
	rt, err := s.runtime(ctx, c.Namespace)
	var reply wire.PreflightReply
	reply.Target = hostinfo.Gather(ctx, rt, s.cfg.StateDir)
	if err != nil {
		reply.Problems = append(reply.Problems, wire.Problem{Code: "unsupported", Message: err.Error(), Hint: "start containerd on the target"})
		return reply, nil
	}
	reply.Problems = append(reply.Problems, TargetProblems(reply.Target, req)...)
	host := reply.Target.Host
	if p := cpuProblem(ctx, reply.Target, req.Source); p != nil {
		reply.Problems = append(reply.Problems, *p)
	}
	if p := apparmorProblem(c.Spec, host); p != nil {
		reply.Problems = append(reply.Problems, *p)
	}
	if c.Network != nil {
		reply.Problems = append(reply.Problems, network.Problems(ctx, c.Network, host)...)
	}
	exists, err := rt.Exists(ctx, c.ID)
	if err != nil {
		return reply, err
	}
	if exists {
		reply.Problems = append(reply.Problems, wire.Problem{Code: "conflict",
			Message: fmt.Sprintf("a container named %q already exists on %s (namespace %s)", c.ID, host, c.Namespace),
			Hint:    "remove it there (ctr -n " + c.Namespace + " container rm " + c.ID + ") or choose another target"})
	}
	vt, vp := s.volumeTargets(req, host)
	reply.Volumes = vt
	reply.Problems = append(reply.Problems, vp...)
	digest, _, err := rt.ImageDigest(ctx, c.Image, c.Snapshotter)
	if err != nil {
		return reply, err
	}
	switch {
	case digest == "":
		reply.ImageMissing = true // the source ships it before the freeze
	case c.ImageDigest != "" && digest != c.ImageDigest:
		reply.Problems = append(reply.Problems, wire.Problem{Code: "precondition",
			Message: fmt.Sprintf("image %s on %s is not the same image as on %s (%.19s… vs %.19s…)", c.Image, host, req.Source.Host, digest, c.ImageDigest),
			Hint:    "make both hosts hold the same image content under that name"})
	}
	return reply, nil
}

// facts answers `ferry check`: what this host supports, with no container in view.
func (s *server) facts(ctx context.Context, req wire.FactsRequest) (wire.FactsReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Namespace == "" {
		req.Namespace = "default"
	}
	if err := identifiers.Validate(req.Namespace); err != nil {
		return wire.FactsReply{}, fmt.Errorf("namespace %q: %w", req.Namespace, errors.Join(err, errdefs.ErrInvalid))
	}
	rt, err := s.runtime(ctx, req.Namespace)
	var reply wire.FactsReply
	reply.Target = hostinfo.Gather(ctx, rt, s.cfg.StateDir)
	if err != nil {
		reply.Problems = append(reply.Problems, wire.Problem{Code: "unsupported", Message: err.Error(), Hint: "start containerd on the target"})
	}
	reply.Problems = append(reply.Problems, hostinfo.Problems(reply.Target)...)
	reply.ZFSParent, reply.ZFS = s.conf.ZFSParent, s.zfsUnavailable(reply.Target.Host)
	reply.CPU = cpuProblem(ctx, reply.Target, req.Source)
	return reply, nil
}

func validContainer(c wire.Container) error {
	if err := identifiers.Validate(c.ID); err != nil {
		return fmt.Errorf("container id %q: %w", c.ID, errors.Join(err, errdefs.ErrInvalid))
	}
	if err := identifiers.Validate(c.Namespace); err != nil {
		return fmt.Errorf("namespace %q: %w", c.Namespace, errors.Join(err, errdefs.ErrInvalid))
	}
	if c.Image == "" || c.Snapshotter == "" || c.SnapshotKey == "" || len(c.Spec) == 0 {
		return fmt.Errorf("container record of %q lacks image, snapshot or spec: %w", c.ID, errdefs.ErrInvalid)
	}
	if c.Network != nil {
		if err := network.Validate(c.Network); err != nil {
			return err
		}
	}
	return specNamespaces(c)
}

// specNamespaces refuses a spec that would join a namespace of this host: runc joins any path
// it names. The one path allowed is the network namespace ferry recreates for it.
func specNamespaces(c wire.Container) error {
	var sp specs.Spec
	if err := json.Unmarshal(c.Spec, &sp); err != nil {
		return fmt.Errorf("container spec of %q: %w", c.ID, errors.Join(err, errdefs.ErrInvalid))
	}
	if sp.Linux == nil {
		return nil
	}
	for _, ns := range sp.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		if ns.Type == specs.NetworkNamespace && c.Network != nil && ns.Path == c.Network.Netns {
			continue
		}
		return fmt.Errorf("the spec of %q joins the %s namespace %s of this host: ferry creates containers only with their own namespaces (or the network namespace it recreates): %w", c.ID, ns.Type, ns.Path, errdefs.ErrInvalid)
	}
	return nil
}

// prepare creates the container (metadata and an empty writable layer, no task) and the
// migration's directories, each change journaled with its undo first.
func (s *server) prepare(ctx context.Context, req wire.PrepareRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j != nil && (s.j.ID != req.MigrationID || s.rec.ID != "") {
		return fmt.Errorf("this session already prepared migration %s: %w", s.j.ID, errdefs.ErrInvalid)
	}
	if s.image != nil {
		return fmt.Errorf("the image %s is still being shipped: %w", s.image.Name, errdefs.ErrProtocol)
	}
	c := req.Container
	if err := ValidMigrationID(req.MigrationID); err != nil {
		return err
	}
	if err := validContainer(c); err != nil {
		return err
	}
	if err := s.checkPlan(req.Mounts, c); err != nil {
		return err
	}
	rt, err := s.runtime(ctx, c.Namespace)
	if err != nil {
		return err
	}
	if err := failpoint.Inject("receiver/prepare"); err != nil {
		return err
	}
	if err := s.begin(req.MigrationID); err != nil {
		return err
	}
	j := s.j
	if err := j.add(Undo{Kind: undoContainer, Namespace: c.Namespace, ID: c.ID, Intent: time.Now().Add(-time.Second)}); err != nil {
		return err
	}
	if err := rt.Create(ctx, c); err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			_ = j.drop() // not ours: never undo it
		}
		return err
	}
	upper, err := rt.WritableDir(ctx, c.Snapshotter, c.SnapshotKey)
	if err != nil {
		return err
	}
	if c.Network != nil {
		// The network before the restore: same namespace path, interfaces, MACs, addresses.
		if _, err := os.Stat(c.Network.Netns); err == nil {
			return fmt.Errorf("network namespace %s already exists here: %w", c.Network.Netns, errdefs.ErrConflict)
		}
		if err := j.add(Undo{Kind: undoNetns, Path: c.Network.Netns}); err != nil {
			return err
		}
		if err := network.Create(ctx, c.Network); err != nil {
			return fmt.Errorf("recreate the container's network: %w", err)
		}
		// Silent until the commit: the restored copy must not talk while the source may still
		// come back.
		if err := network.Lock(ctx, c.Network.Netns); err != nil {
			return err
		}
	}
	s.rec, s.plan = c, req.Mounts
	s.mounts, s.datasets = map[string]string{"rootfs": upper}, map[string]string{}
	if err := s.prepareVolumes(); err != nil {
		return err
	}
	s.log.Info("prepared", "migration", req.MigrationID, "container", c.ID, "rootfs", upper, "mounts", len(req.Mounts))
	return nil
}

// begin creates the migration's journal and directories at its first change on this host.
func (s *server) begin(id string) error {
	if s.j != nil {
		return nil
	}
	j, err := createJournal(s.cfg.StateDir, id)
	if err != nil {
		return err
	}
	s.j = j
	if err := j.add(Undo{Kind: undoFile, Path: s.sock}); err != nil {
		return err
	}
	dir := migrationDir(s.cfg.StateDir, id)
	s.imagesDir, s.workDir = filepath.Join(dir, "images"), filepath.Join(dir, "work")
	for _, d := range []string{s.imagesDir, s.workDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// startImage answers which blobs of an image the source must send, and registers the image's
// undo before the import begins.
func (s *server) startImage(ctx context.Context, req wire.ImageRequest) (reply wire.ImageReply, err error) {
	lock, err := lockImage(ctx, s.cfg.RunDir, req.Namespace+"/"+req.Name)
	if err != nil {
		return wire.ImageReply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if err != nil || s.imagePresent {
			lock.Close()
			return
		}
		s.imageLock = lock // until the import ends
	}()
	if err := ValidMigrationID(req.MigrationID); err != nil {
		return wire.ImageReply{}, err
	}
	if _, err := reference.ParseAnyReference(req.Name); err != nil || req.Snapshotter == "" {
		return wire.ImageReply{}, fmt.Errorf("image name %q: %w", req.Name, errdefs.ErrInvalid)
	}
	for _, d := range append([]wire.Descriptor{req.Target}, req.Blobs...) {
		if _, err := runtime.FromWire(d); err != nil {
			return wire.ImageReply{}, err
		}
	}
	rt, err := s.runtime(ctx, req.Namespace)
	if err != nil {
		return wire.ImageReply{}, err
	}
	if err := s.begin(req.MigrationID); err != nil {
		return wire.ImageReply{}, err
	}
	digest, unpacked, err := rt.ImageDigest(ctx, req.Name, req.Snapshotter)
	switch {
	case err != nil:
		return wire.ImageReply{}, err
	case digest == req.Target.Digest && unpacked:
		// Another migration (a drain's) shipped it while this one waited for the lock.
		s.imagePresent = true
		return wire.ImageReply{}, nil
	case digest != "":
		return wire.ImageReply{}, fmt.Errorf("image %s appeared on this host meanwhile, with other content: %w", req.Name, errdefs.ErrConflict)
	}
	if err := s.j.add(Undo{Kind: undoImage, Namespace: req.Namespace, ID: req.Name, Intent: time.Now().Add(-time.Second)}); err != nil {
		return wire.ImageReply{}, err
	}
	missing, err := rt.MissingBlobs(ctx, req.Blobs)
	if err != nil {
		return wire.ImageReply{}, err
	}
	s.image = &req
	return wire.ImageReply{Missing: missing}, nil
}

func (s *server) state() string {
	if s.j == nil {
		return ""
	}
	return s.j.State
}

// restore checks every transferred image file, restores the task and freezes it (READY).
func (s *server) restore(ctx context.Context, req wire.RestoreRequest) (wire.RestoreReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state() != StatePrepared || req.MigrationID != s.j.ID {
		return wire.RestoreReply{}, fmt.Errorf("restore in state %q: %w", s.state(), errdefs.ErrProtocol)
	}
	if err := s.checkPreRounds(req.PreRounds); err != nil {
		return wire.RestoreReply{}, err
	}
	if err := s.checkPages(s.pages, req.Pages); err != nil {
		return wire.RestoreReply{}, err
	}
	if err := sftpdir.Verify(s.imagesDir, req.Images, s.pageFile); err != nil {
		return wire.RestoreReply{}, err
	}
	if err := failpoint.Inject("receiver/restore"); err != nil {
		return wire.RestoreReply{}, err
	}
	if err := s.j.set(StateRestoring); err != nil {
		return wire.RestoreReply{}, err
	}
	// Here the journal says "restoring": a fault (a sleep) at this point holds the target in
	// that state for a test that acts on it, however slow the machine.
	if err := failpoint.Inject("receiver/restoring"); err != nil {
		_ = s.j.set(StatePrepared)
		return wire.RestoreReply{}, err
	}
	if err := s.mountVolumes(); err != nil {
		_ = s.j.set(StatePrepared)
		return wire.RestoreReply{}, err
	}
	criuWork := filepath.Join(s.workDir, "criu")
	ro := runtime.RestoreOptions{ImagesDir: s.imagesDir, WorkDir: criuWork, Paused: true}
	if req.Lazy {
		if err := s.startLazy(criuWork, &ro); err != nil {
			_ = s.j.set(StatePrepared)
			return wire.RestoreReply{}, err
		}
	}
	if err := s.restoreFlags(req.Lazy, &ro); err != nil {
		s.stopLazy()
		_ = s.j.set(StatePrepared)
		return wire.RestoreReply{}, err
	}
	start := time.Now()
	pid, err := s.rt.Restore(ctx, s.rec, ro)
	if err != nil {
		s.stopLazy()
		_ = s.j.set(StatePrepared)
		return wire.RestoreReply{}, err
	}
	reply := wire.RestoreReply{PID: pid, RestoreTime: time.Since(start)}
	if st, err := checkpoint.ReadRestoreStats(criuWork); err == nil {
		reply.PagesRestored, reply.ForkingTime = st.PagesRestored, st.ForkingTime
		reply.RestoreTime = st.RestoreTime
	}
	if err := failpoint.Inject("receiver/ready"); errors.Is(err, failpoint.ErrStop) && s.lazy != nil {
		_ = s.lazy.cmd.Process.Signal(unix.SIGSTOP) // post-copy's fill hangs (tests)
	} else if err != nil {
		return wire.RestoreReply{}, err
	}
	if err := s.j.set(StateReady); err != nil {
		return wire.RestoreReply{}, err
	}
	s.log.Info("restored and frozen (ready)", "pid", pid)
	return reply, nil
}

// checkPages waits for the page server to finish and compares what it received with what the
// source says it sent (bytes and checksum).
func (s *server) checkPages(ps *pagesResult, want *wire.StreamSum) error {
	if want == nil {
		return nil
	}
	if ps == nil {
		return fmt.Errorf("the source sent pages but no page stream arrived: %w", errdefs.ErrProtocol)
	}
	select {
	case <-ps.done:
	case <-time.After(time.Minute):
		return fmt.Errorf("the page server did not finish: %w", errdefs.ErrTransient)
	}
	if ps.err != nil {
		return fmt.Errorf("receiving pages: %w", ps.err)
	}
	if ps.sum.Bytes != want.Bytes || ps.sum.Checksum != want.Checksum {
		return fmt.Errorf("the page stream is corrupt or incomplete: received %d bytes (%s), sent %d (%s): %w",
			ps.sum.Bytes, ps.sum.Checksum, want.Bytes, want.Checksum, errdefs.ErrProtocol)
	}
	return nil
}

// checkPreRounds checks each pre-copy round's page stream like the final one.
func (s *server) checkPreRounds(want []wire.StreamSum) error {
	if len(want) != len(s.preRounds) {
		return fmt.Errorf("the source sent %d pre-copy rounds, %d arrived: %w", len(want), len(s.preRounds), errdefs.ErrProtocol)
	}
	for i := range want {
		if err := s.checkPages(s.preRounds[i], &want[i]); err != nil {
			return fmt.Errorf("pre-copy round %d: %w", i+1, err)
		}
	}
	return nil
}

// pageFile accepts, among the restore images, the files the page server wrote, and the link
// to the last pre-copy round's images.
func (s *server) pageFile(name string) bool {
	if name == parentLink {
		return len(s.preRounds) > 0
	}
	return s.pages != nil && (strings.HasPrefix(name, "pages-") || strings.HasPrefix(name, "pagemap-")) && strings.HasSuffix(name, ".img")
}

// commit records the decision, then lets the restored task run.
func (s *server) commit(ctx context.Context, req wire.CommitRequest) (wire.CommitReply, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state() != StateReady || req.MigrationID != s.j.ID {
		return wire.CommitReply{}, nil, fmt.Errorf("commit in state %q: %w", s.state(), errdefs.ErrPrecondition)
	}
	if err := failpoint.Inject("receiver/commit"); err != nil {
		return wire.CommitReply{}, nil, err
	}
	s.j.Undo = nil
	if err := s.j.set(StateCommitted); err != nil {
		return wire.CommitReply{}, nil, err
	}
	start := time.Now()
	if s.rec.Network != nil {
		if err := network.Unlock(ctx, s.rec.Network.Netns); err != nil {
			return wire.CommitReply{}, nil, fmt.Errorf("committed, but the restored container's network does not unlock: %w", err)
		}
	}
	if err := s.rt.Resume(ctx, s.rec.ID); err != nil {
		return wire.CommitReply{}, nil, fmt.Errorf("committed, but the restored task does not resume: %w", err)
	}
	reply := wire.CommitReply{ResumeTime: time.Since(start)}
	s.log.Info("committed: task running", "container", s.rec.ID)
	if s.rec.Network != nil {
		reply.NetworkHook = s.networkHook(ctx)
	}
	// Checkpoint files are no longer needed; the journal stays as the record of the decision.
	lazy := s.lazy
	after := func() {
		s.commitVolumes()
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if lazy != nil { // the lazy-pages daemon needs the images until it has every page
				select {
				case <-lazy.done:
				default:
					s.log.Info("the checkpoint images stay until the lazy-pages daemon has filled the task")
					<-lazy.done
				}
			}
			_ = os.RemoveAll(s.imagesDir)
			keepCRIULogs(s.workDir)
			_ = os.RemoveAll(s.workDir)
		}()
	}
	return reply, after, nil
}

// abort undoes the migration unless it was committed.
func (s *server) abort(ctx context.Context, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j == nil {
		return nil
	}
	if s.j.State == StateCommitted {
		return fmt.Errorf("migration %s is committed on this host: refusing to abort it: %w", s.j.ID, errdefs.ErrPrecondition)
	}
	s.log.Info("aborting", "migration", s.j.ID, "reason", reason)
	s.stopLazy()
	s.closeStreams()
	err := undo(ctx, s.cfg, s.j, s.log)
	s.j = nil
	return err
}

// disconnected is called when the control channel ends: an uncommitted migration is undone.
func (s *server) disconnected(cause error) {
	s.mu.Lock()
	pending := s.j != nil && s.j.State != StateCommitted
	s.mu.Unlock()
	if pending {
		s.log.Warn("control channel lost before commit: undoing", "cause", cause)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.abort(ctx, "control channel lost"); err != nil {
			s.log.Error("undo failed", "err", err)
		}
	}
}

func (s *server) close() {
	s.mu.Lock()
	if s.lazyConn != nil && (s.lazy == nil) {
		s.lazyConn.Close()
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		_ = os.Remove(s.sock)
	}
	s.mu.Lock()
	s.closeStreams()
	if s.j != nil {
		s.j.Close()
	}
	if s.rt != nil {
		s.rt.Close()
	}
	s.mu.Unlock()
}

// keepCRIULogs moves CRIU's logs of a committed migration (restore, lazy-pages) next to its
// journal: small, and what an operator asks for when a restore was slow or odd.
func keepCRIULogs(workDir string) {
	logs, _ := filepath.Glob(filepath.Join(workDir, "criu", "*.log"))
	for _, l := range logs {
		_ = os.Rename(l, filepath.Join(filepath.Dir(workDir), "criu-"+filepath.Base(l)))
	}
}

// networkHook runs the configured hook after a container whose network moved is committed
// here, so that its addresses are routed to this host. Its failure does not undo the commit:
// it is reported.
func (s *server) networkHook(ctx context.Context) string {
	hook := s.conf.NetworkHook
	if hook == "" {
		hook = config.DefaultNetworkHook
		if _, err := os.Stat(hook); err != nil {
			return ""
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(hctx, hook)
	cmd.Env = append(os.Environ(),
		"FERRY_MIGRATION_ID="+s.j.ID, "FERRY_NAMESPACE="+s.rec.Namespace, "FERRY_CONTAINER="+s.rec.ID,
		"FERRY_NETNS="+s.rec.Network.Netns, "FERRY_ADDRESSES="+strings.Join(network.Addresses(s.rec.Network), " "))
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.log.Error("network hook failed", "hook", hook, "err", err, "output", string(out))
		return fmt.Sprintf("%s: %v: %s", hook, err, strings.TrimSpace(string(out)))
	}
	s.log.Info("network hook ran", "hook", hook)
	return "ok"
}

// lockImage takes this host's lock for shipping image key (namespace/name), waiting while
// another migration holds it; closing the file releases it (so does the process's end).
func lockImage(ctx context.Context, runDir, key string) (*os.File, error) {
	dir := filepath.Join(runDir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(key))
	f, err := os.OpenFile(filepath.Join(dir, "image-"+hex.EncodeToString(sum[:8])), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock image %s: %w", key, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
