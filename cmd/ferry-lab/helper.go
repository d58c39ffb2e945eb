package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/lab"
)

// newHelper is the hidden command ferry-lab runs inside a host for containerd work.
func newHelper() *cobra.Command {
	h := &cobra.Command{Use: lab.HelperCmd, Hidden: true}
	h.AddCommand(&cobra.Command{
		Use: "import TAR", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return lab.HelperImport(cmd.Context(), args[0]) },
	})
	var o lab.RunOptions
	run := &cobra.Command{
		Use: "run HOST NAME", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Command = args[1], args[2:]
			return lab.HelperRun(cmd.Context(), args[0], o)
		},
	}
	run.Flags().IntVar(&o.MemMiB, "mem", 64, "")
	run.Flags().Float64Var(&o.DirtyMiB, "dirty", 1, "")
	run.Flags().StringVar(&o.Volume, "volume", "", "")
	run.Flags().IntVar(&o.VolumeMiB, "volume-mib", 64, "")
	run.Flags().BoolVar(&o.Hardened, "hardened", false, "")
	run.Flags().StringVar(&o.User, "user", "", "")
	run.Flags().StringVar(&o.IP, "ip", "", "")
	run.Flags().BoolVar(&o.Sessions, "sessions", false, "")
	h.AddCommand(run)
	var output string
	check := &cobra.Command{
		Use: "check HOST NAME", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := lab.HelperCheck(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if output == "json" {
				if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
					return err
				}
			} else if res.OK {
				s := res.State
				vol := ""
				if s.VolumeMiB > 0 {
					vol = fmt.Sprintf(" and %d MiB of volume", s.VolumeMiB)
				}
				fmt.Printf("%s on %s: OK — same process (nonce %s), counter %d, %d MiB of memory%s verified in full (0 errors), %d ticks on disk\n",
					res.Name, res.Host, s.Nonce, s.Counter, s.MemMiB, vol, s.TicksLines)
			} else {
				fmt.Printf("%s on %s: FAILED\n", res.Name, res.Host)
				for _, p := range res.Problems {
					fmt.Printf("  - %s\n", p)
				}
			}
			if !res.OK {
				return exitError{1}
			}
			return nil
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "text", "")
	h.AddCommand(check)
	h.AddCommand(&cobra.Command{
		Use: "list HOST", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := lab.HelperList(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if cs == nil {
				cs = []lab.ContainerStatus{}
			}
			return json.NewEncoder(os.Stdout).Encode(cs)
		},
	})
	h.AddCommand(&cobra.Command{
		Use: "rm NAME", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return lab.HelperRemove(cmd.Context(), args[0]) },
	})
	return h
}
