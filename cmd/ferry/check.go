package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferry-project/ferry/internal/hostinfo"
	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
)

func newCheck(g *globalFlags) *cobra.Command {
	f := &migrateFlags{checkOnly: true}
	cmd := &cobra.Command{
		Use:   "check [user@]HOST[:port] [CONTAINER]",
		Short: "Preflight only: what this host and HOST support, and what auto would choose",
		Long: `check connects to HOST as migrate does, changes nothing, and prints what both sides
support — CRIU version and 'criu check', soft-dirty tracking (pre-copy), userfaultfd and lazy
dumps (post-copy), ZFS (this host's zfs, HOST's parent dataset), rsync, CPU compatibility, free
space — the link's measured throughput, which strategies can run, and what auto would choose by
the memory a container uses.

With CONTAINER it also runs that container's full preflight (everything migrate checks before
it changes anything: its spec, volumes, network, the name on HOST…) and says which strategy
auto would take for it and how its filesystem would move.

Exit status: 0 a migration can run; 3 it would be refused (the problems are listed); 2 usage
or HOST unreachable.`,
		Example: `  ferry check b
  ferry check b web
  ferry check root@10.0.0.7:2222 --output json`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return completeContainers(g)(cmd, args, s)
			}
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, f, args)
		},
	}
	// A container's preflight takes migrate's defaults for everything check does not offer.
	f.addMoveFlags(pflag.NewFlagSet("migrate defaults", pflag.ContinueOnError))
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	fl.DurationVar(&f.maxDowntime, "max-downtime", migrate.DefaultMaxDowntime, "the downtime auto allows stop-copy")
	f.hostFlags.add(fl)
	return cmd
}

func runCheck(ctx context.Context, g *globalFlags, f *migrateFlags, args []string) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", f.output)
	}
	dest := args[0]
	ep, err := transport.ParseEndpoint(dest)
	if err != nil {
		return err
	}
	log := g.logger()
	in := migrate.CheckInput{MaxDowntime: f.maxDowntime}
	rt, err := runtime.Connect(ctx, f.containerdAddress, g.namespace)
	if err != nil {
		log.Warn("containerd on this host", "err", err)
		rt = nil
	} else {
		defer rt.Close()
	}
	in.Source = hostinfo.Gather(ctx, rt, f.stateDir)
	if err := zfs.Available(); err != nil {
		in.SourceZFS = err.Error()
	}
	recv, closeRecv, err := f.hostFlags.connect(ctx, ep, log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer closeRecv()
	if !slices.Contains(recv.Hello.Features, wire.FeatureFacts) {
		return &exitError{code: exitUsage, err: fmt.Errorf("ferry-receiver on %s is too old to answer check (install this ferry's version there)", ep.Host)}
	}
	if in.Facts, err = recv.Facts(ctx, wire.FactsRequest{Namespace: g.namespace, Source: in.Source}); err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("facts from %s: %w", ep.Host, err)}
	}
	// The best of three short probes: a cold or disturbed one only ever reads low.
	for range 3 {
		bps, err := recv.Probe(ctx, 24<<20)
		if err != nil {
			in.LinkErr = err.Error()
			break
		}
		in.LinkBps = max(in.LinkBps, bps)
	}
	closeRecv()
	if len(args) == 2 {
		rep, err := migrateOne(ctx, g, f, args[1], dest)
		if rep == nil {
			return err
		}
		in.Container = rep
	}
	r := migrate.Check(in)
	if f.output == "json" {
		_, _ = os.Stdout.Write(r.JSON())
	} else {
		fmt.Print(r.Text())
	}
	if !r.OK {
		return &exitError{code: exitRefused, err: fmt.Errorf("a migration to %s would be refused (%d problem(s))", ep.Host, len(r.Problems))}
	}
	return nil
}
