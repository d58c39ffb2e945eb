package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/transport"
)

type recoverFlags struct {
	hostFlags
	output string
}

func newRecover(g *globalFlags) *cobra.Command {
	f := &recoverFlags{}
	cmd := &cobra.Command{
		Use:   "recover [ID]",
		Short: "Finish migrations whose commit outcome was unknown (exit status 4 of migrate)",
		Long: `When the target's answer to COMMIT is lost and the target cannot be asked, ferry migrate
leaves the source copy frozen, records the migration in STATE-DIR/pending/ID.json and exits
with status 4. ferry recover reads those records (or the one ID), asks each target what it
decided (ferry-receiver status, over SSH) and finishes that decision: if the target committed,
the frozen source copy is removed; otherwise the migration is aborted on the target (so it can
never commit) and the source copy resumes. Without an answer from the target nothing changes.`,
		Example: `  ferry recover
  ferry recover m-8f2c41d07a9e3b15 --output json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runRecover(cmd, g, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	f.hostFlags.add(fl)
	return cmd
}

func runRecover(cmd *cobra.Command, g *globalFlags, f *recoverFlags, args []string) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", f.output)
	}
	ctx, log := cmd.Context(), g.logger()
	pending, err := migrate.ListPending(f.stateDir)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if len(args) == 1 {
		var one []migrate.Pending
		for _, p := range pending {
			if p.ID == args[0] {
				one = append(one, p)
			}
		}
		if len(one) == 0 {
			return &exitError{code: exitFailed, err: fmt.Errorf("no pending migration %s in %s", args[0], migrate.PendingDir(f.stateDir))}
		}
		pending = one
	}
	results := []*migrate.Recovery{}
	var errs []error
	for _, p := range pending {
		r, err := recoverOne(ctx, f, p)
		if r == nil {
			r = &migrate.Recovery{ID: p.ID, Container: p.Container, Target: p.Target}
		}
		if err != nil {
			log.Error("recover", "id", p.ID, "err", err)
			r.Actions = append(r.Actions, "FAILED: "+err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", p.ID, err))
		}
		results = append(results, r)
	}
	if f.output == "json" {
		_ = json.NewEncoder(os.Stdout).Encode(results)
	} else if len(results) == 0 {
		fmt.Println("no pending migrations")
	}
	if f.output != "json" {
		for _, r := range results {
			fmt.Printf("%s (%s → %s): target says %q → %s\n", r.ID, r.Container, r.Target, r.TargetState, cmp.Or(r.Outcome, "unresolved"))
			for _, a := range r.Actions {
				fmt.Printf("  - %s\n", a)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	return nil
}

func recoverOne(ctx context.Context, f *recoverFlags, p migrate.Pending) (*migrate.Recovery, error) {
	ep, err := transport.ParseEndpoint(p.Target)
	if err != nil {
		return nil, err
	}
	rt, err := runtime.Connect(ctx, f.containerdAddress, p.Namespace)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	dialOpts := transport.DialOptions{IdentityFiles: f.identities, KnownHosts: f.knownHosts}
	client, err := transport.Dial(ctx, ep, dialOpts)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w (nothing changed; the source copy stays frozen)", p.Target, err)
	}
	defer client.Close()
	admin := client.NewAdmin(f.receiverCommand, func(ctx context.Context) (*transport.Client, error) { return transport.Dial(ctx, ep, dialOpts) })
	return migrate.Recover(ctx, p, &migrate.LocalSource{RT: rt, StateDir: f.stateDir}, admin, f.stateDir)
}
