package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/lab"
)

// newRedis is the client side of a lab Redis container (ferry-lab run --net --redis): it
// connects from the lab's switch, as a client elsewhere on the network would.
func newRedis() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "redis",
		Short: "Talk to a lab Redis container from the lab's switch: load keys, watch one connection, verify keys",
		Example: `  ferry-lab run a cache --net --redis
  ferry-lab redis load cache --keys 100000
  ferry-lab redis watch cache --keys 100000 --output json > watch.json &   # stop with SIGINT
  ferry-lab redis verify cache --keys 100000`,
	}
	var keys int
	load := &cobra.Command{
		Use: "load NAME", Short: "Flush the database and write --keys keys (key:NNNNNNN, each value derived from its key)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := lab.RedisAddr(args[0])
			if err != nil {
				return err
			}
			start := time.Now()
			if err := lab.RedisLoad(cmd.Context(), addr, keys); err != nil {
				return err
			}
			fmt.Printf("%s: %d keys loaded in %.1f s\n", args[0], keys, time.Since(start).Seconds())
			return nil
		},
	}
	verify := &cobra.Command{
		Use: "verify NAME", Short: "Read every key `load` wrote and compare its value",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := lab.RedisAddr(args[0])
			if err != nil {
				return err
			}
			n, err := lab.RedisVerify(cmd.Context(), addr, keys)
			if err != nil {
				return fmt.Errorf("%s: %d keys read: %w", args[0], n, err)
			}
			fmt.Printf("%s: all %d keys present with their values\n", args[0], n)
			return nil
		},
	}
	var output string
	var interval time.Duration
	watch := &cobra.Command{
		Use:   "watch NAME",
		Short: "Keep one connection, issue INCR/GET every --interval until SIGINT/SIGTERM, then report the longest gap",
		Long: `watch keeps ONE TCP connection to the container's Redis and issues a command every
--interval: INCR of a counter (each answer must be the previous + 1) alternating with GET of a
loaded key (compared with its value). On SIGINT or SIGTERM it asks CLIENT ID again on the same
connection and prints what it saw: requests answered, the longest gap between two answers
(client-observed downtime), and whether the server-side client is the one it started with.
It exits 1 if the connection broke or an answer was wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := lab.RedisAddr(args[0])
			if err != nil {
				return err
			}
			w, err := lab.StartRedisWatch(cmd.Context(), addr, keys, interval)
			if err != nil {
				return err
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			fmt.Fprintf(os.Stderr, "watching %s (%s) on one connection; SIGINT to stop\n", args[0], addr)
			<-sig
			res, werr := w.Stop()
			if output == "json" {
				if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
					return err
				}
			} else {
				fmt.Printf("%s: %d requests on one connection (client id %d → %d), counter %d, longest gap %.0f ms\n",
					args[0], res.Requests, res.ClientIDBefore, res.ClientIDAfter, res.Counter, res.LongestGapMs)
			}
			if werr != nil {
				fmt.Fprintf(os.Stderr, "FAILED: %v\n", werr)
				return exitError{1}
			}
			return nil
		},
	}
	watch.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	watch.Flags().DurationVar(&interval, "interval", 5*time.Millisecond, "time between two commands")
	for _, c := range []*cobra.Command{load, verify, watch} {
		c.Flags().IntVar(&keys, "keys", 10000, "how many keys (key:0000000 …)")
		cmd.AddCommand(c)
	}
	return cmd
}

func newBenchRedis() *cobra.Command {
	var out string
	var keys []int
	cmd := &cobra.Command{
		Use:   "bench-redis",
		Short: "Client-observed downtime of a Redis container per key count and strategy (JSON to --out, a table on stdout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := lab.BenchRedis(cmd.Context(), keys, os.Stderr)
			if err != nil {
				return err
			}
			return writeBench(out, res, res.Markdown())
		},
	}
	cmd.Flags().StringVar(&out, "out", "bench/results/redis.json", "where to write the JSON")
	cmd.Flags().IntSliceVar(&keys, "keys", []int{10000, 1000000}, "key counts")
	return cmd
}

func newPlot() *cobra.Command {
	var mem, dir string
	cmd := &cobra.Command{
		Use:   "plot",
		Short: "Draw the memory bench's figures as SVG: downtime against RSS per method, one move's phase timeline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := lab.Plot(mem, dir)
			for _, f := range files {
				fmt.Println("wrote", f)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&mem, "mem", "bench/results/mem.json", "the memory bench's JSON (ferry-lab bench-mem)")
	cmd.Flags().StringVar(&dir, "out", "bench/results", "where the SVG files go")
	return cmd
}
