// Command ferry moves running containers between hosts. See `ferry --help` and README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/internal/version"
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
)

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
	}
	root.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "default", "containerd namespace")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log progress (-vv: debug)")
	root.AddCommand(newMigrate(g), newRecover(g))
	return root
}
