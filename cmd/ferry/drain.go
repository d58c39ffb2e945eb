package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/transport"
)

type drainFlags struct {
	migrateFlags
	to          string
	concurrency int
	exclude     []string
}

func newDrain(g *globalFlags) *cobra.Command {
	f := &drainFlags{}
	cmd := &cobra.Command{
		Use:   "drain --to [user@]HOST[:port]",
		Short: "Move every running container of a namespace to another host (before maintenance)",
		Long: `drain moves every running container of the namespace (-n) to HOST, at most --concurrency
at a time, each exactly as ferry migrate would (same checks, strategies and guarantees). A move
that fails leaves that container running here, as it was, and the drain goes on with the others.
Ctrl-C stops starting new moves; moves under way roll back.

At the end it prints a table (or, with --output json, a JSON report with each container's full
migration report) and exits non-zero if any container is still here.

Exit status: 0 every container moved; otherwise that of the most serious failure: 4 a commit
in doubt, 6 a post-copy committed but incomplete, 5 a rollback incomplete, 1 a move failed and
rolled back, 3 a move refused (nothing changed); 2 usage or nothing could start.`,
		Example: `  ferry drain --to b
  ferry drain --to b -n prod --concurrency 4 --exclude db --exclude cache
  ferry drain --to root@10.0.0.7 --strategy stop-copy --output json > drain.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDrain(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "the host to move the containers to ([user@]HOST[:port]; required)")
	fl.IntVar(&f.concurrency, "concurrency", 2, "moves at a time")
	fl.StringArrayVar(&f.exclude, "exclude", nil, "a container to leave here (repeatable)")
	f.migrateFlags.addMoveFlags(fl)
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.RegisterFlagCompletionFunc("exclude", completeContainers(g))
	return cmd
}

func runDrain(ctx context.Context, g *globalFlags, f *drainFlags) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", f.output)
	}
	if f.concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1")
	}
	ep, err := transport.ParseEndpoint(f.to)
	if err != nil {
		return err
	}
	rt, err := runtime.Connect(ctx, f.containerdAddress, g.namespace)
	if err != nil {
		return err
	}
	running, err := rt.Running(ctx)
	rt.Close()
	if err != nil {
		return err
	}
	var names, excluded []string
	for _, n := range running {
		if slices.Contains(f.exclude, n) {
			excluded = append(excluded, n)
		} else {
			names = append(names, n)
		}
	}
	log := g.logger()
	log.Info("drain", "to", ep.Host, "containers", names, "excluded", excluded, "concurrency", f.concurrency)
	prog, err := newProgress(f.progressMode, os.Stderr)
	if err != nil {
		return err
	}
	mf := f.migrateFlags
	mf.prog = prog
	rep := migrate.Drain(ctx, names, f.concurrency, func(ctx context.Context, name string) (*migrate.Report, error) {
		return migrateOne(ctx, g, &mf, name, f.to)
	})
	prog.Close()
	rep.Source, _ = os.Hostname()
	rep.Target, rep.Namespace, rep.Excluded = ep.Host, g.namespace, excluded
	if rep.Excluded == nil {
		rep.Excluded = []string{}
	}
	f.emit(rep.JSON(), rep.Text())
	worst := rep.Worst()
	if worst == "" {
		return nil
	}
	return &exitError{code: exitFor(worst), err: fmt.Errorf("%d of %d container(s) were not moved to %s", rep.Failed, len(names), ep.Host)}
}
