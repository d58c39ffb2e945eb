// Command ferry moves running containers between hosts. See `ferry --help` and README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/internal/config"
	"github.com/ferry-project/ferry/internal/version"
	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot/rsync"
)

// Exit codes (docs/cli.md).
const (
	exitOK                 = 0
	exitFailed             = 1 // failed and rolled back: the source runs as before, the target is clean
	exitUsage              = 2
	exitRefused            = 3 // preflight refused: nothing was changed
	exitInDoubt            = 4 // commit outcome unknown: see the message
	exitRollbackIncomplete = 5
	exitIncomplete         = 6 // committed, but post-copy's fill did not finish: see the message
)

// exitFor is the exit status of a failed move's outcome (of a drain's worst one).
func exitFor(outcome string) int {
	switch outcome {
	case migrate.OutcomeRefused:
		return exitRefused
	case migrate.OutcomeInDoubt:
		return exitInDoubt
	case migrate.OutcomeRollbackIncomplete:
		return exitRollbackIncomplete
	case migrate.OutcomeCommittedIncomplete:
		return exitIncomplete
	default: // rolled back, not attempted, or any other failure
		return exitFailed
	}
}

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if len(os.Args) > 1 && os.Args[1] == rsync.RshCmd {
		if err := rsync.RshMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "ferry:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "ferry:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(exitUsage)
}

type globalFlags struct {
	namespace string
	verbose   int
	config    string
}

// applyConfig sets every flag of cmd that the command line left alone and the configuration
// file gives a default for.
func (g *globalFlags) applyConfig(cmd *cobra.Command) error {
	if fl := cmd.Flags().Lookup("config"); fl != nil && fl.Changed {
		if _, err := os.Stat(g.config); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	c, err := config.Load(g.config)
	if err != nil {
		return err
	}
	for name, values := range c.FlagDefaults() {
		fl := cmd.Flags().Lookup(name)
		if fl == nil || fl.Changed {
			continue
		}
		for _, v := range values {
			if err := cmd.Flags().Set(name, v); err != nil {
				return fmt.Errorf("%s: %s = %q: %w", g.config, strings.ReplaceAll(name, "-", "_"), v, err)
			}
		}
	}
	return nil
}

func (g *globalFlags) logger() *slog.Logger {
	lvl := slog.LevelWarn
	switch {
	case g.verbose >= 2:
		lvl = slog.LevelDebug
	case g.verbose == 1:
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Move running containers between hosts without losing their state",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.applyConfig(cmd)
		},
	}
	root.PersistentFlags().StringVar(&g.config, "config", config.DefaultPath, "configuration file: defaults for the flags (identity, known_hosts, namespace, strategy, max_downtime, compress, bwlimit, concurrency, receiver_command)")
	root.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "default", "containerd namespace")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log progress (-vv: debug)")
	root.AddCommand(newMigrate(g), newDrain(g), newCheck(g), newBench(g), newRecover(g), newVersion())
	return root
}

// completeContainers offers this host's running containers (shell completion).
func completeContainers(g *globalFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		addr := runtime.DefaultAddress
		if fl := cmd.Flags().Lookup("containerd-address"); fl != nil {
			addr = fl.Value.String()
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
		defer cancel()
		rt, err := runtime.Connect(ctx, addr, g.namespace)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer rt.Close()
		ids, _ := rt.Running(ctx)
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}
