package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/transport"
)

// linkBench is `ferry bench`'s result: the same bytes to HOST three ways, and what ferry's rate
// means for stop-copy's downtime.
type linkBench struct {
	Source    string             `json:"source"`
	Target    string             `json:"target"`
	Bytes     int64              `json:"bytes"`
	Methods   []linkBenchMethod  `json:"methods"`
	Estimates []downtimeEstimate `json:"stop_copy_estimates"`
}

type linkBenchMethod struct {
	Method string  `json:"method"` // ferry-stream, openssh, rsync
	Ms     float64 `json:"ms,omitempty"`
	// SetupMs is OpenSSH's connection setup (ssh HOST true), subtracted from Ms before the rate:
	// ferry's stream is measured on its established connection.
	SetupMs float64 `json:"setup_ms,omitempty"`
	MBps    float64 `json:"mb_per_s,omitempty"`
	Skipped string  `json:"skipped,omitempty"`
}

type downtimeEstimate struct {
	MemoryMiB  int     `json:"memory_mib"`
	DowntimeMs float64 `json:"downtime_ms"`
}

func newBench(g *globalFlags) *cobra.Command {
	f := &hostFlags{}
	var output, size string
	cmd := &cobra.Command{
		Use:   "bench [user@]HOST[:port]",
		Short: "Measure the link to HOST as ferry uses it, against plain OpenSSH and rsync, and what it means for downtime",
		Long: `bench sends the same bytes to HOST three ways and times them: through ferry's own stream
(the SSH connection ferry-receiver serves, no compression — what memory pages and files travel
on), through a plain OpenSSH pipe (ssh HOST 'cat >/dev/null'), and with rsync of a file of that
size (to a temporary directory on HOST, removed afterwards). It then estimates stop-copy's
downtime for 64, 256 and 1024 MiB of memory at ferry's rate (the same model auto uses).

It moves no container: the full benchmark with workloads, strategies, filesystem drivers and
Podman as a baseline runs on the lab (make bench; see README).`,
		Example: `  ferry bench b
  ferry bench root@10.0.0.7 --bytes 1G --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			n, err := parseSize(size)
			if err != nil || n < 1<<20 {
				return fmt.Errorf("--bytes %q: want at least 1M", size)
			}
			r, err := runBench(cmd.Context(), g, f, args[0], n)
			if err != nil {
				return err
			}
			if output == "json" {
				b, _ := json.MarshalIndent(r, "", "  ")
				_, err := os.Stdout.Write(append(b, '\n'))
				return err
			}
			fmt.Print(r.text())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&output, "output", "o", "text", "text or json")
	fl.StringVar(&size, "bytes", "256M", "how much to send each way (K, M, G)")
	f.add(fl)
	return cmd
}

func runBench(ctx context.Context, g *globalFlags, f *hostFlags, dest string, n int64) (*linkBench, error) {
	ep, err := transport.ParseEndpoint(dest)
	if err != nil {
		return nil, err
	}
	r := &linkBench{Target: ep.Host, Bytes: n}
	r.Source, _ = os.Hostname()
	recv, closeRecv, err := f.connect(ctx, ep, g.logger())
	if err != nil {
		return nil, err
	}
	var best float64
	for range 3 {
		bps, err := recv.Probe(ctx, n)
		if err != nil {
			closeRecv()
			return nil, fmt.Errorf("ferry stream to %s: %w", ep.Host, err)
		}
		best = max(best, bps)
	}
	closeRecv()
	r.Methods = append(r.Methods, linkBenchMethod{Method: "ferry-stream", Ms: float64(n) / best * 1000, MBps: best / 1e6})
	setup := timed("setup", 1, func() error { return sshCmd(ctx, f, ep, "", "true").Run() })
	if setup.Skipped != "" {
		r.Methods = append(r.Methods, linkBenchMethod{Method: "openssh", Skipped: "ssh " + ep.Host + " true: " + setup.Skipped},
			linkBenchMethod{Method: "rsync", Skipped: "needs OpenSSH to " + ep.Host})
	} else {
		r.Methods = append(r.Methods, timed("openssh", n, func() error {
			return sshCmd(ctx, f, ep, fmt.Sprintf("head -c %d /dev/zero | ", n), "cat >/dev/null").Run()
		}), rsyncBench(ctx, f, ep, n))
		for i := range r.Methods[1:] {
			m := &r.Methods[1+i]
			if m.Skipped == "" && m.Ms > setup.Ms {
				m.SetupMs = setup.Ms
				m.MBps = float64(n) / ((m.Ms - setup.Ms) / 1000) / 1e6
			}
		}
	}
	for _, mib := range []int{64, 256, 1024} {
		r.Estimates = append(r.Estimates, downtimeEstimate{MemoryMiB: mib,
			DowntimeMs: float64(migrate.EstimateStopCopy(uint64(mib)<<20, best).Microseconds()) / 1000})
	}
	return r, nil
}

// sshOptions are OpenSSH's options for the target with the same identity, known_hosts and port
// as ferry's own connection, and the destination.
func sshOptions(f *hostFlags, ep transport.Endpoint) []string {
	args := []string{"-o", "BatchMode=yes", "-o", "Compression=no", "-p", strconv.Itoa(ep.Port)}
	for _, i := range f.identities {
		args = append(args, "-i", i)
	}
	for _, k := range f.knownHosts {
		args = append(args, "-o", "UserKnownHostsFile="+k)
	}
	return args
}

// destination is [user@]host for OpenSSH and rsync.
func destination(ep transport.Endpoint) string {
	if ep.User != "" {
		return ep.User + "@" + ep.Host
	}
	return ep.Host
}

// shellQuote quotes each word for sh.
func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// sshCmd runs remote on the target with OpenSSH; local (a shell pipeline's head, or "") feeds
// its stdin.
func sshCmd(ctx context.Context, f *hostFlags, ep transport.Endpoint, local, remote string) *exec.Cmd {
	args := append(sshOptions(f, ep), destination(ep), remote)
	return exec.CommandContext(ctx, "sh", "-c", local+"ssh "+shellQuote(args...))
}

func timed(method string, n int64, run func() error) linkBenchMethod {
	start := time.Now()
	if err := run(); err != nil {
		return linkBenchMethod{Method: method, Skipped: err.Error()}
	}
	s := time.Since(start).Seconds()
	return linkBenchMethod{Method: method, Ms: s * 1000, MBps: float64(n) / s / 1e6}
}

func rsyncBench(ctx context.Context, f *hostFlags, ep transport.Endpoint, n int64) linkBenchMethod {
	if _, err := exec.LookPath("rsync"); err != nil {
		return linkBenchMethod{Method: "rsync", Skipped: "rsync is not installed here"}
	}
	dir, err := os.MkdirTemp("", "ferry-bench")
	if err != nil {
		return linkBenchMethod{Method: "rsync", Skipped: err.Error()}
	}
	defer os.RemoveAll(dir)
	// Random bytes: rsync's own compression is off, but zeros would still be suspiciously fast
	// to read; the file is written before the clock starts.
	data := filepath.Join(dir, "data")
	if err := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > '%s'", n, data)).Run(); err != nil {
		return linkBenchMethod{Method: "rsync", Skipped: "write the test file: " + err.Error()}
	}
	remote := fmt.Sprintf("/tmp/ferry-bench-%d", os.Getpid())
	defer func() { _ = sshCmd(context.WithoutCancel(ctx), f, ep, "", "rm -rf "+remote).Run() }()
	return timed("rsync", n, func() error {
		out, err := exec.CommandContext(ctx, "rsync", "-a", "-e", "ssh "+shellQuote(sshOptions(f, ep)...), dir+"/", destination(ep)+":"+remote+"/").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

func (r *linkBench) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ferry bench: %s → %s, %s each way\n\n", r.Source, r.Target, migrate.HumanBytes(r.Bytes))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  METHOD\tTIME\tRATE\t")
	var ferry float64
	for _, m := range r.Methods {
		if m.Skipped != "" {
			fmt.Fprintf(tw, "  %s\tskipped: %s\t\t\n", m.Method, m.Skipped)
			continue
		}
		if m.Method == "ferry-stream" {
			ferry = m.MBps
		}
		ratio := ""
		if ferry > 0 && m.Method != "ferry-stream" {
			ratio = fmt.Sprintf("(ferry ÷ %s: %.2f)", m.Method, ferry/m.MBps)
		}
		t := fmt.Sprintf("%.0f ms", m.Ms)
		if m.SetupMs > 0 {
			t += fmt.Sprintf(" (%.0f of them SSH setup)", m.SetupMs)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.0f MB/s\t%s\n", m.Method, t, m.MBps, ratio)
	}
	_ = tw.Flush()
	b.WriteString("\nstop-copy downtime at ferry's rate (the model auto uses):")
	for _, e := range r.Estimates {
		fmt.Fprintf(&b, " %d MiB ≈ %.1f s;", e.MemoryMiB, e.DowntimeMs/1000)
	}
	b.WriteString("\n")
	return b.String()
}
