package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferry-project/ferry/internal/units"
	"github.com/ferry-project/ferry/internal/version"
	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/receiver"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/snapshot/rsync"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
)

// hostFlags are how ferry reaches the target and this host's containerd (migrate, recover).
type hostFlags struct {
	identities        []string
	knownHosts        []string
	receiverCommand   string
	containerdAddress string
	stateDir          string
}

func (h *hostFlags) add(fl *pflag.FlagSet) {
	fl.StringArrayVarP(&h.identities, "identity", "i", nil, "SSH private key (repeatable; default: ssh-agent and ~/.ssh/id_*)")
	fl.StringArrayVar(&h.knownHosts, "known-hosts", nil, "known_hosts file (default ~/.ssh/known_hosts)")
	fl.StringVar(&h.receiverCommand, "receiver-command", "ferry-receiver", "how to run ferry-receiver on the target")
	fl.StringVar(&h.containerdAddress, "containerd-address", runtime.DefaultAddress, "containerd socket on this host")
	fl.StringVar(&h.stateDir, "state-dir", "/var/lib/ferry", "working directory on this host")
}

// connect starts ferry-receiver on the target over SSH; close ends both.
func (h *hostFlags) connect(ctx context.Context, ep transport.Endpoint, log *slog.Logger) (*transport.Receiver, func(), error) {
	dialOpts := transport.DialOptions{IdentityFiles: h.identities, KnownHosts: h.knownHosts, Log: log}
	client, err := transport.Dial(ctx, ep, dialOpts)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	recv, err := client.StartReceiver(ctx,
		wire.Hello{Protocol: wire.ProtocolVersion, Version: version.Version, Host: host, Features: receiver.Features},
		transport.ReceiverOptions{Command: h.receiverCommand, Redial: func(ctx2 context.Context) (*transport.Client, error) {
			return transport.Dial(ctx2, ep, dialOpts)
		}})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	var once sync.Once
	return recv, func() { once.Do(func() { recv.Close(); client.Close() }) }, nil
}

type migrateFlags struct {
	checkOnly    bool // ferry check HOST CONTAINER
	progressMode string
	prog         *progress
	hostFlags
	output        string
	reportFile    string
	strategy      string
	maxDowntime   time.Duration
	compress      string
	bwlimit       string
	precopyRounds int
	precopyGoal   string
	precopyGrowth float64
	postcopyStall time.Duration
}

func newMigrate(g *globalFlags) *cobra.Command {
	f := &migrateFlags{}
	cmd := &cobra.Command{
		Use:   "migrate CONTAINER [user@]HOST[:port]",
		Short: "Move a running container to another host",
		Long: `Move a running container, with its memory and files, to another host over SSH.

ferry connects with your SSH keys (ssh-agent, ~/.ssh/id_*) and checks the host key against
~/.ssh/known_hosts: an unknown or changed key is refused. It starts ferry-receiver on the
target, checks both sides, copies the writable layer while the container runs, freezes it,
checkpoints it with CRIU, copies the last changes and the checkpoint, restores it (frozen) on
the target, and only when the target confirms does it let the target copy run and remove the
source copy. Any failure before that resumes the source exactly as it was and cleans the
target. Ctrl-C rolls back the same way.

Memory moves by one of three strategies (--strategy; auto picks and says why):
  stop-copy   frozen while memory streams to the target (a CRIU page server, no disk)
  pre-copy    memory copied in rounds while the container runs, then the last changes
              (needs soft-dirty tracking, CONFIG_MEM_SOFT_DIRTY, on the source); rounds
              stop at --precopy-rounds, once a round copies ≤ --precopy-goal, or when a
              round copies more than the one before (+ --precopy-max-growth)
  post-copy   the target runs the container at once and fetches memory as it touches it
              (needs userfaultfd on the target). RISK: until every page has arrived, the
              container's memory lives on both hosts; losing the source or the link during
              that fill loses the container. ferry keeps the source frozen until the target
              confirms every page, and reports how long that took (residency); if no page
              moves for --postcopy-stall, it stops waiting and says so, the source still frozen.
auto takes stop-copy when its estimated downtime (from the memory in use and a short link
probe) is within --max-downtime, else pre-copy where possible, else post-copy.

--compress zstd and --bwlimit apply to every stream: memory pages, filesystem (rsync and zfs
send) and image content. zstd pays on slow links and compressible data; on a fast link with
random memory it only costs CPU (incompressible chunks are sent as they are).

Exit status: 0 moved; 1 failed and rolled back; 2 usage; 3 refused by preflight (nothing
changed); 4 commit outcome unknown (the message says what to do); 5 rollback incomplete;
6 committed, but post-copy's fill did not finish (the target may lack memory; the source copy
stays frozen with all of it: the message says what to do).`,
		Example: `  ferry migrate web b
  ferry migrate -n prod db root@10.0.0.7:2222 --output json
  ferry migrate web b --report /var/log/ferry/web.json
  ferry migrate web b --compress zstd --bwlimit 40M`,
		Args: cobra.ExactArgs(2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return completeContainers(g)(cmd, args, s)
			}
			return nil, cobra.ShellCompDirectiveDefault // hosts: the shell's own completion
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMigrate(cmd, g, f, args[0], args[1])
		},
	}
	f.addMoveFlags(cmd.Flags())
	return cmd
}

// addMoveFlags registers what a move needs (migrate, drain).
func (f *migrateFlags) addMoveFlags(fl *pflag.FlagSet) {
	fl.StringVarP(&f.output, "output", "o", "text", "report format: text or json")
	fl.StringVar(&f.reportFile, "report", "", "also write the JSON report to this file")
	fl.StringVar(&f.progressMode, "progress", progressAuto, "progress on stderr: auto (bars on a terminal, else plain), bar, plain (a line per phase, per stream every 2 s), json (events), none")
	f.hostFlags.add(fl)
	fl.StringVar(&f.strategy, "strategy", "auto", "how memory moves: auto, stop-copy, pre-copy, post-copy (see ferry migrate --help)")
	fl.DurationVar(&f.maxDowntime, "max-downtime", migrate.DefaultMaxDowntime, "auto: the downtime stop-copy may cost before a better strategy is taken")
	fl.IntVar(&f.precopyRounds, "precopy-rounds", migrate.DefaultPreCopyRule.MaxRounds, "pre-copy: at most this many rounds before the final dump")
	fl.StringVar(&f.precopyGoal, "precopy-goal", "16M", "pre-copy: stop iterating once a round copies at most this much (K, M, G)")
	fl.Float64Var(&f.precopyGrowth, "precopy-max-growth", migrate.DefaultPreCopyRule.MaxGrowth, "pre-copy: stop when a round copies more than (1 + this) × the previous one")
	fl.DurationVar(&f.postcopyStall, "postcopy-stall", migrate.DefaultFillStall, "post-copy: give up waiting for the remaining pages when none has moved for this long (the source stays frozen)")
	fl.StringVar(&f.compress, "compress", wire.CompressNone, "compress every stream (memory, files, image): zstd or none")
	fl.StringVar(&f.bwlimit, "bwlimit", "0", "cap what all streams send, per second, after compression: e.g. 50M, 800K (KiB when no unit; 0 = none)")
}

func runMigrate(cmd *cobra.Command, g *globalFlags, f *migrateFlags, container, dest string) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", f.output)
	}
	prog, err := newProgress(f.progressMode, os.Stderr)
	if err != nil {
		return err
	}
	f.prog = prog
	rep, err := migrateOne(cmd.Context(), g, f, container, dest)
	prog.Close()
	if rep == nil {
		return err // bad flags: usage
	}
	f.emit(rep.JSON(), rep.Text())
	if err == nil {
		return nil
	}
	code := exitFor(rep.Outcome)
	if errors.Is(err, migrate.ErrInDoubt) {
		code = exitInDoubt
	}
	return &exitError{code: code, err: err}
}

// emit prints a command's report (JSON or text, by --output) and writes the JSON to --report.
func (f *migrateFlags) emit(jsonReport []byte, text string) {
	if f.reportFile != "" {
		if err := os.WriteFile(f.reportFile, jsonReport, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ferry: write report:", err)
		}
	}
	if f.output == "json" {
		_, _ = os.Stdout.Write(jsonReport)
	} else {
		fmt.Print(text)
	}
}

// parseSize reads a size: bytes, or a number with a unit K, M or G (powers of 1024).
func parseSize(s string) (int64, error) {
	v, unit, err := units.Split(s, 1)
	if err != nil || v < 0 || v > 1<<40 {
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M or G, e.g. 16M", s)
	}
	return int64(v * float64(unit)), nil
}

// migrateOne moves (or, with f.checkOnly, checks) one container. A nil report means the flags
// were wrong; otherwise the report says what happened, even when nothing could start.
func migrateOne(ctx context.Context, g *globalFlags, f *migrateFlags, container, dest string) (*migrate.Report, error) {
	log := g.logger().With("container", container)
	ep, err := transport.ParseEndpoint(dest)
	if err != nil {
		return nil, err
	}
	bps, err := transport.ParseRate(f.bwlimit)
	if err != nil {
		return nil, fmt.Errorf("--bwlimit: %w", err)
	}
	streamOpts := transport.StreamOptions{Compress: f.compress, BytesPerSecond: bps}
	if err := streamOpts.Validate(); err != nil {
		return nil, fmt.Errorf("--compress: %w", err)
	}
	goal, err := parseSize(f.precopyGoal)
	if err != nil {
		return nil, fmt.Errorf("--precopy-goal: %w", err)
	}
	rule := migrate.PreCopyRule{MaxRounds: f.precopyRounds, GoalBytes: goal, MaxGrowth: f.precopyGrowth}
	if err := rule.Validate(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rep, err := func() (*migrate.Report, error) {
		rt, err := runtime.Connect(ctx, f.containerdAddress, g.namespace)
		if err != nil {
			return nil, err
		}
		defer rt.Close()
		recv, closeRecv, err := f.hostFlags.connect(ctx, ep, log)
		if err != nil {
			return nil, err
		}
		defer closeRecv()
		if err := recv.SetStreamOptions(streamOpts); err != nil {
			return nil, err
		}
		var onEvent func(migrate.Event)
		if f.prog != nil {
			recv.OnBytes = func(kind, name string, n int64) { f.prog.Bytes(container, kind, name, n) }
			onEvent = f.prog.Event
		}
		id := migrate.NewID()
		rep, err := migrate.Run(ctx, migrate.Config{
			ID: id, Container: container, CheckOnly: f.checkOnly, Progress: onEvent, Namespace: g.namespace, StateDir: f.stateDir, TargetAddr: dest, Log: g.logger(), Strategy: f.strategy, MaxDowntime: f.maxDowntime, PreCopy: rule, FillStall: f.postcopyStall,
			Source: &migrate.LocalSource{RT: rt, StateDir: f.stateDir},
			Target: recv,
			Drivers: map[string]snapshot.Driver{
				rsync.Name: &rsync.Driver{Streams: recv, Rsh: []string{self, rsync.RshCmd}, BaseMark: g.namespace + "/" + container, Log: log,
					Itemize: slices.Contains(recv.Hello.Features, wire.FeatureRsyncItemize)},
				zfs.Name: &zfs.Driver{Streams: recv, MigrationID: id, Log: log},
			},
		})
		if err != nil && recv.Stderr() != "" {
			log.Info("ferry-receiver stderr", "text", recv.Stderr())
		}
		return rep, err
	}()
	if rep == nil {
		// Nothing started: connection or setup failure.
		rep = &migrate.Report{Container: container, Namespace: g.namespace, Target: ep.Host, Outcome: migrate.OutcomeRefused, Problems: []string{err.Error()}, Error: err.Error()}
		if h, herr := os.Hostname(); herr == nil {
			rep.Source = h
		}
	}
	return rep, err
}
