package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-project/ferry/lab"
)

func newUp() *cobra.Command {
	var bin string
	var verbose, zfs bool
	cmd := &cobra.Command{
		Use:   "up [--zfs]",
		Short: "Create lab hosts a and b (namespaces, sshd, containerd, lab image; with --zfs a zfs-fuse pool each)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Up(cmd.Context(), lab.UpOptions{BinDir: bin, ZFS: zfs, Log: logger(verbose)}); err != nil {
				return err
			}
			for _, h := range lab.Hosts {
				fmt.Printf("host %s  %s  up\n", h.Name, h.Addr)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&bin, "bin", "", "directory with ferry, ferry-receiver, ferry-workload (default: next to ferry-lab)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each step")
	cmd.Flags().BoolVar(&zfs, "zfs", false, "give each host a zfs-fuse pool (tank) and ferry a ZFS parent dataset (tank/ferry)")
	return cmd
}

func newDown() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: no process, mount, namespace, interface or file is left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(cmd.Context(), lab.DownOptions{Log: logger(verbose)}); err != nil {
				return err
			}
			if r := lab.Residue(); len(r) > 0 {
				return fmt.Errorf("left behind: %s", strings.Join(r, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each step")
	return cmd
}

func newExec() *cobra.Command {
	return &cobra.Command{
		Use:   "exec HOST -- CMD...",
		Short: "Run a command as if logged in on a lab host",
		Example: `  ferry-lab exec a -- ferry migrate web b
  ferry-lab exec b -- ctr task ls`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := lab.LookupHost(args[0])
			if err != nil {
				return err
			}
			c := lab.Command(h, args[1:]...)
			if len(args) == 1 {
				c = lab.Command(h)
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return exitStatus(c.Run())
		},
	}
}

// exitStatus passes a child's exit status through.
func exitStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitError{ee.ExitCode()}
	}
	return err
}

// inHost runs ferry-lab's helper on a host with the caller's stdio.
func inHost(host string, args ...string) error {
	h, err := lab.LookupHost(host)
	if err != nil {
		return err
	}
	c := lab.Command(h, append([]string{lab.HelperPath(), lab.HelperCmd}, args...)...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	return exitStatus(c.Run())
}

func newRun() *cobra.Command {
	var hardened, withNet, sessions, redis bool
	var user string
	var mem, volMiB int
	var dirty float64
	var volume string
	cmd := &cobra.Command{
		Use:   "run HOST NAME [--mem MiB] [--dirty MiB/s] [--volume PATH[:zfs]] [-- CMD...]",
		Short: "Start a container from the lab image (the workload, or CMD)",
		Example: `  ferry-lab run a web --mem 256 --dirty 4
  ferry-lab run a db --volume /srv/db:zfs --volume-mib 256
  ferry-lab run a locked --hardened
  ferry-lab run a nobody --hardened --user 1000:1000
  ferry-lab run a web --net
  ferry-lab run a web --net --sessions
  ferry-lab run a cache --net --redis
  ferry-lab run a idle -- sleep 3600`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			a := []string{"run", args[0], args[1], "--mem", fmt.Sprint(mem), "--dirty", fmt.Sprint(dirty),
				"--volume", volume, "--volume-mib", fmt.Sprint(volMiB), "--hardened=" + fmt.Sprint(hardened), "--user", user}
			var ip netip.Addr
			if withNet {
				h, err := lab.LookupHost(args[0])
				if err != nil {
					return err
				}
				if ip, err = lab.AllocateContainerIP(args[1]); err != nil {
					return err
				}
				a = append(a, "--ip", ip.String(), "--sessions="+fmt.Sprint(sessions))
				defer func() {
					if err == nil {
						err = lab.RouteContainer(cmd.Context(), ip, h)
					}
					if err != nil {
						_ = lab.ReleaseContainerIP(cmd.Context(), args[1], h)
					}
				}()
			}
			if redis {
				if !withNet || len(args) > 2 {
					return fmt.Errorf("--redis needs --net and no CMD")
				}
				if _, err := os.Stat(lab.RedisServer); err != nil {
					return fmt.Errorf("the lab image has Redis only if this machine has %s (make deps installs redis-server; then ferry-lab down && ferry-lab up): %w", lab.RedisServer, err)
				}
				args = append(args, lab.RedisArgs()...)
			}
			if len(args) > 2 {
				a = append(append(a, "--"), args[2:]...)
			}
			return inHost(args[0], a...)
		},
	}
	cmd.Flags().IntVar(&mem, "mem", 64, "MiB of memory the workload holds")
	cmd.Flags().Float64Var(&dirty, "dirty", 1, "MiB/s of memory the workload rewrites")
	cmd.Flags().StringVar(&volume, "volume", "", "a data volume at /data: a directory PATH under /srv, or PATH:zfs for a dataset of the host's pool")
	cmd.Flags().IntVar(&volMiB, "volume-mib", 64, "MiB the workload keeps on its volume (and keeps rewriting)")
	cmd.Flags().BoolVar(&withNet, "net", false, "give it its own network namespace on the host's container bridge, with a lab address the switch routes to it")
	cmd.Flags().BoolVar(&sessions, "sessions", false, fmt.Sprintf("with --net: the workload serves TCP sessions on port %d (one numbered answer per line)", lab.SessionPort))
	cmd.Flags().BoolVar(&redis, "redis", false, fmt.Sprintf("with --net: run Debian's redis-server (in memory, port %d) instead of the workload", lab.RedisPort))
	cmd.Flags().StringVar(&user, "user", "", "with --hardened: run the process as UID:GID (numeric) instead of root, its capabilities ambient")
	cmd.Flags().BoolVar(&hardened, "hardened", false, "run it as production containers run: default seccomp profile, no_new_privs, few capabilities, memory/CPU/pids limits")
	return cmd
}

func newRm() *cobra.Command {
	return &cobra.Command{
		Use:   "rm HOST NAME",
		Short: "Kill and remove a container (and its writable layer) on a lab host",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := inHost(args[0], "rm", args[1]); err != nil {
				return err
			}
			h, err := lab.LookupHost(args[0])
			if err != nil {
				return err
			}
			return lab.ReleaseContainerIP(cmd.Context(), args[1], h)
		},
	}
}

func newCheck() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "check HOST NAME",
		Short: "Prove the workload NAME runs on HOST and lost nothing (same process, counter, memory, files)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inHost(args[0], "check", args[0], args[1], "--output", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newStatus() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts and their containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(os.Stdout).Encode(st)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tADDRESS\tCONTAINERD\tSSHD\tCONTAINER\tSTATUS\tPID")
			for _, h := range st {
				if len(h.Containers) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\n", h.Name, h.Addr, upDown(h.Containerd), upDown(h.SSHD))
				}
				for _, c := range h.Containers {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", h.Name, h.Addr, upDown(h.Containerd), upDown(h.SSHD), c.Name, c.Status, c.PID)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "DOWN"
}

func newBenchFS() *cobra.Command {
	var out string
	var size, repeat int
	cmd := &cobra.Command{
		Use:   "bench-fs",
		Short: "Measure the filesystem drivers: bytes and time, downtime with a big volume vs an empty one (lab up --zfs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := lab.BenchFS(cmd.Context(), size, repeat, os.Stderr)
			if err != nil {
				return err
			}
			return writeBench(out, res, res.Markdown())
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the JSON results to this file")
	cmd.Flags().IntVar(&size, "size-mib", 1024, "MiB of data in the big volume")
	cmd.Flags().IntVar(&repeat, "repeat", 3, "measured moves per case")
	return cmd
}

// writeBench writes a bench's JSON to out (if given) and prints its Markdown table.
func writeBench(out string, res any, markdown string) error {
	if out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(markdown)
	return nil
}

func newBenchMem() *cobra.Command {
	var out string
	var o lab.BenchMemOptions
	cmd := &cobra.Command{
		Use:   "bench-mem",
		Short: "Measure the memory strategies against the raw SSH link and Podman's checkpoint/restore pipeline (lab up)",
		Long: `Move a workload of each size with each memory strategy this kernel supports (every move
checked with ferry-lab check), time the same bytes through a plain OpenSSH pipe, and run Podman's
checkpoint --export → copy over SSH → restore --import with the same workload. Writes JSON and
prints a Markdown table of medians and the goals.`,
		Example: `  ferry-lab bench-mem --out bench/results/mem.json
  ferry-lab bench-mem --sizes 64,256 --repeat 2 --podman=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer lab.PodmanCleanup(context.WithoutCancel(cmd.Context()))
			res, err := lab.BenchMem(cmd.Context(), o, os.Stderr)
			if err != nil {
				return err
			}
			return writeBench(out, res, res.Markdown())
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the JSON results to this file")
	cmd.Flags().IntSliceVar(&o.SizesMiB, "sizes", []int{64, 256, 1024}, "workload sizes in MiB")
	cmd.Flags().IntVar(&o.Repeat, "repeat", 3, "measured moves per size and strategy")
	cmd.Flags().Float64Var(&o.DirtyMiBps, "dirty", 1, "MiB/s the workload rewrites")
	cmd.Flags().BoolVar(&o.Podman, "podman", true, "also measure Podman's pipeline (needs podman)")
	cmd.Flags().StringSliceVar(&o.Drivers, "drivers", []string{"rootfs"}, "filesystem cases crossed with sizes and strategies: rootfs (writable layer only), rsync, zfs (plus a 16 MiB volume; zfs needs ferry-lab up --zfs)")
	return cmd
}

func newVM() *cobra.Command {
	var o lab.VMOptions
	var env []string
	cmd := &cobra.Command{
		Use:   "vm [flags] -- COMMAND [ARG...]",
		Short: "Run a command on Debian's stock kernel in a VM whose root is this machine's (read-only, with a tmpfs overlay)",
		Long: `Run a command on another kernel: Debian's stock one (make deps fetches it), which has what this
machine's kernel may lack — soft-dirty memory tracking, which pre-copy needs. qemu runs it with
TCG (software emulation); the VM's root is this machine's, shared read-only over 9p under a
tmpfs overlay, so every installed tool and the repo are there and nothing the VM does reaches
this machine. The command runs as root in the current directory with PATH, HOME and the
--env given; ferry-lab vm exits with its status.`,
		Example: `  ferry-lab vm -- criu check --feature mem_dirty_track
  ferry-lab vm --env FERRY_E2E_BIN=bin/vm -- bin/vm/e2e.test -test.run TestPreCopy -test.v`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			o.Dir, o.Argv = wd, args
			o.Env = append([]string{"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, env...)
			code, err := lab.RunVM(cmd.Context(), o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.MemMiB, "mem", 3072, "memory of the VM, MiB")
	fl.IntVar(&o.CPUs, "cpus", 2, "virtual CPUs")
	fl.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "stop the VM after this long")
	fl.StringVar(&o.KernelDir, "kernel", "", "an unpacked linux-image package (default: the newest under "+lab.VMDir+")")
	fl.StringArrayVar(&env, "env", nil, "KEY=VALUE for the command (repeatable)")
	return cmd
}
