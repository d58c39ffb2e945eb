// Command ferry-lab runs ferry's two-host lab on one machine: `up`, `down`, `exec`, `run`,
// `check`, `status`. See lab/ for what a lab host is.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/lab/zfsshim"
)

// exitError carries a specific exit status.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// Installed as `zfs` on lab hosts: the zfs-fuse compatibility shim.
	if filepath.Base(os.Args[0]) == "zfs" {
		os.Exit(zfsshim.Main(os.Args[1:]))
	}
	// Hidden entry points must run before cobra: they exec and never return.
	if len(os.Args) > 1 {
		if handled, err := hidden(os.Args[1:]); handled {
			fmt.Fprintln(os.Stderr, "ferry-lab:", err)
			os.Exit(125)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "ferry-lab:", err)
		os.Exit(1)
	}
}

func logger(verbose bool) *slog.Logger {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "ferry-lab",
		Short:         "Two real Linux hosts on one machine, for trying and testing ferry",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  ferry-lab up
  ferry-lab run a web --mem 64 --dirty 1
  ferry-lab exec a -- ferry migrate web b
  ferry-lab check b web
  ferry-lab down`,
	}
	root.AddCommand(newUp(), newDown(), newExec(), newRun(), newCheck(), newRm(), newStatus(), newBenchFS(), newBenchMem(), newBenchRedis(), newRedis(), newPlot(), newVM(), newHelper())
	return root
}
