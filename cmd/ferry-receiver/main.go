// Command ferry-receiver is the target side of a migration. ferry starts it over SSH
// (`ferry-receiver serve`); operators use `status` and `abort` to inspect or undo a migration
// whose source went away.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/internal/version"
	"github.com/ferry-project/ferry/receiver"
)

func main() {
	// When the SSH link drops, a write to stdout must fail with EPIPE, not kill the receiver
	// (Go's default for fd 1 and 2) before it undoes an uncommitted migration.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-receiver:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var cfg receiver.Config
	root := &cobra.Command{
		Use:           "ferry-receiver",
		Short:         "Target side of a ferry migration (started by ferry over SSH)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfg.StateDir, "state-dir", "/var/lib/ferry", "migration state directory")
	root.PersistentFlags().StringVar(&cfg.ContainerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd socket")
	cfg.Version = version.Version
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	root.AddCommand(&cobra.Command{
		Use:   "serve",
		Short: "Serve one migration on stdin/stdout (ferry runs this over SSH)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return receiver.Serve(cmd.Context(), cfg, os.Stdin, os.Stdout)
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "status ID",
		Short: "Print a migration's state on this host as JSON (absent, prepared, ready, committed, …)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := receiver.Status(cfg, args[0])
			if err != nil {
				return err
			}
			return json.NewEncoder(os.Stdout).Encode(map[string]string{"id": args[0], "state": st})
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "abort ID",
		Short: "Undo a migration that is not committed (removes its container and files)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := receiver.Abort(cmd.Context(), cfg, args[0])
			if st != "" {
				_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"id": args[0], "state": st})
			}
			return err
		},
	})
	root.AddCommand(&cobra.Command{
		Use:    "attach SOCKET",
		Short:  "Relay stdin/stdout to a session's stream socket (used when SSH forwarding is off)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := net.Dial("unix", args[0])
			if err != nil {
				return err
			}
			defer c.Close()
			go func() {
				_, _ = io.Copy(c, os.Stdin)
				_ = c.(*net.UnixConn).CloseWrite()
			}()
			_, err = io.Copy(os.Stdout, c)
			return err
		},
	})
	return root
}
