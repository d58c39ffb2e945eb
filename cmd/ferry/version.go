package main

import (
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/version"
	"github.com/ferry-project/ferry/transport/wire"
)

func newVersion() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version, its protocol version and this host's CRIU",
		Long: `version prints ferry's version, the protocol version it speaks with ferry-receiver (both
hosts need the same), the Go version it was built with and the CRIU found on this host.`,
		Example: `  ferry version
  ferry version --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			v := struct {
				Version  string `json:"version"`
				Protocol int    `json:"protocol"`
				Go       string `json:"go"`
				CRIU     string `json:"criu"`
			}{version.Version, wire.ProtocolVersion, goruntime.Version(), "none"}
			if n, err := checkpoint.Version(cmd.Context()); err == nil {
				v.CRIU = checkpoint.FormatVersion(n)
			}
			if output == "json" {
				b, _ := json.MarshalIndent(v, "", "  ")
				_, err := os.Stdout.Write(append(b, '\n'))
				return err
			}
			fmt.Printf("ferry %s (protocol %d, %s), CRIU %s\n", v.Version, v.Protocol, v.Go, v.CRIU)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
