package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// upState is written when the lab is up; down reads it.
type upState struct {
	Hosts   []string `json:"hosts"`
	Created []string `json:"created"` // mount points created on the real machine, removed by down
	Bin     string   `json:"bin"`     // directory of the ferry binaries
	ZFS     bool     `json:"zfs"`     // each host has a zfs-fuse pool
	// PipeMaxSize is fs.pipe-max-size before the lab raised it (0: untouched); down restores it.
	PipeMaxSize int       `json:"pipe_max_size,omitempty"`
	Started     time.Time `json:"started"`
}

func statePath() string { return filepath.Join(StateDir, "up.json") }

const pipeMaxSize = "/proc/sys/fs/pipe-max-size"

func readState() (*upState, error) {
	b, err := os.ReadFile(statePath())
	if err != nil {
		return nil, err
	}
	var st upState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(), err)
	}
	return &st, nil
}

func writeState(st *upState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(statePath(), b, 0o644)
}

// IsUp reports whether the lab is up.
func IsUp() bool { return fileExists(statePath()) }

// UpOptions configure Up.
type UpOptions struct {
	BinDir string // where ferry, ferry-receiver and ferry-workload are; default: next to ferry-lab
	ZFS    bool   // give each host a zfs-fuse pool and a ZFS parent dataset for ferry
	Log    *slog.Logger
}

// Up creates the lab. On failure it tears down what it made.
func Up(ctx context.Context, o UpOptions) (err error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return errors.New("ferry-lab up needs root (it creates namespaces, cgroups and interfaces)")
	}
	if IsUp() {
		return errors.New("the lab is already up (ferry-lab status shows it; ferry-lab down removes it)")
	}
	if leftovers := residue(); len(leftovers) > 0 {
		return fmt.Errorf("a previous lab left %s behind: run ferry-lab down first", strings.Join(leftovers, ", "))
	}
	need := []string{"ip", "nsenter", "unshare", "mount", "/usr/sbin/sshd", "containerd", "containerd-shim-runc-v2", "runc", "criu", "rsync"}
	if o.ZFS {
		need = append(need, "zfs-fuse", "/usr/sbin/zfs", "/usr/sbin/zpool")
	}
	for _, c := range need {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s is not installed (make deps installs everything): %w", c, err)
		}
	}
	bin := o.BinDir
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		bin = filepath.Dir(self)
	}
	for _, b := range []string{"ferry", "ferry-receiver", "ferry-workload"} {
		if !fileExists(filepath.Join(bin, b)) {
			return fmt.Errorf("%s not found in %s (make build puts it there)", b, bin)
		}
	}
	hs, err := hierarchies()
	if err != nil {
		return err
	}

	st := &upState{Bin: bin, Started: time.Now(), ZFS: o.ZFS}
	defer func() {
		if err != nil {
			log.Warn("lab up failed, tearing down", "err", err)
			if derr := Down(context.WithoutCancel(ctx), DownOptions{Log: log}); derr != nil {
				err = errors.Join(err, fmt.Errorf("tearing down the failed lab: %w", derr))
			}
		}
	}()
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return err
	}
	// Write the state first, so that down can undo a half-made lab.
	if err := writeState(st); err != nil {
		return err
	}

	// Mount points that each host sees privately must exist on the real machine.
	for _, d := range privateDirs {
		if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(d.Path, 0o755); err != nil {
				return err
			}
			st.Created = append(st.Created, d.Path)
		}
	}
	if err := writeState(st); err != nil {
		return err
	}
	if err := os.MkdirAll(BinDir(), 0o755); err != nil {
		return err
	}
	if o.ZFS {
		// go-zfs runs `zfs` from PATH: the lab's shim (ferry-lab as "zfs") comes first.
		if err := copyFile(selfPath(), filepath.Join(BinDir(), "zfs")); err != nil {
			return err
		}
	}
	// Install the binaries where every host sees them (the build directory may be private to
	// the real machine, e.g. under /tmp).
	for _, b := range []struct{ src, name string }{
		{filepath.Join(bin, "ferry"), "ferry"},
		{filepath.Join(bin, "ferry-receiver"), "ferry-receiver"},
		{selfPath(), "ferry-lab"},
	} {
		if err := copyFile(b.src, filepath.Join(BinDir(), b.name)); err != nil {
			return fmt.Errorf("install %s: %w", b.name, err)
		}
	}
	// The namespace files live on a private mount (a bind of the directory onto itself).
	if err := os.MkdirAll(filepath.Join(RunDir, "ns"), 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(RunDir, RunDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", RunDir, err)
	}
	if err := syscall.Mount("", RunDir, "", syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", RunDir, err)
	}

	// Post-copy: CRIU's lazy page server needs pipes bigger than fs.pipe-max-size, which root
	// without CAP_SYS_RESOURCE (as on these machines) cannot get otherwise.
	if b, err := os.ReadFile(pipeMaxSize); err == nil {
		if cur, _ := strconv.Atoi(strings.TrimSpace(string(b))); cur > 0 && cur < 4<<20 {
			st.PipeMaxSize = cur
			if err := writeState(st); err != nil {
				return err
			}
			if err := os.WriteFile(pipeMaxSize, []byte("4194304"), 0o644); err != nil {
				return fmt.Errorf("raise %s: %w", pipeMaxSize, err)
			}
		}
	}
	keys, err := makeKeys()
	if err != nil {
		return err
	}
	log.Info("network", "switch", switchNS, "lan", LANPrefix)
	if err := upSwitch(ctx); err != nil {
		return err
	}
	for _, h := range Hosts {
		st.Hosts = append(st.Hosts, h.Name)
		if err := writeState(st); err != nil {
			return err
		}
		log.Info("host", "name", h.Name, "addr", h.Addr)
		if err := upHost(ctx, hs, h, keys); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		if o.ZFS {
			if err := upZFS(ctx, h); err != nil {
				return fmt.Errorf("host %s: zfs: %w", h.Name, err)
			}
		}
	}
	for _, h := range Hosts {
		if err := waitFor(ctx, 20*time.Second, func() error { return dialSSH(h) }); err != nil {
			return fmt.Errorf("host %s: sshd does not answer: %w (see %s)", h.Name, err, filepath.Join(h.dir(), "sshd.log"))
		}
	}
	log.Info("image", "ref", ImageRef)
	tar, err := BuildImage(bin)
	if err != nil {
		return err
	}
	for _, h := range Hosts {
		if err := runIn(ctx, h, HelperPath(), HelperCmd, "import", tar); err != nil {
			return fmt.Errorf("host %s: import image: %w", h.Name, err)
		}
	}
	return nil
}

func waitFor(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dialSSH checks that the host's sshd answers with an SSH banner, from the switch's namespace.
func dialSSH(h Host) error {
	return inNetns("/run/netns/"+switchNS, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr.String(), "22"), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "SSH-" {
			return fmt.Errorf("no SSH banner from %s: %q %v", h.Addr, b, err)
		}
		return nil
	})
}

// inNetns runs f on an OS thread that has joined the network namespace at path.
func inNetns(path string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic("cannot return to the original network namespace: " + err.Error())
		}
	}()
	return f()
}

// runIn runs argv on host h and returns its error with its output.
func runIn(ctx context.Context, h Host, argv ...string) error {
	cmd := Command(h, argv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("on %s: %s: %w: %s", h.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return ctx.Err()
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func upSwitch(ctx context.Context) error {
	steps := [][]string{
		{"ip", "netns", "add", switchNS},
		{"ip", "-n", switchNS, "link", "set", "lo", "up"},
		{"ip", "-n", switchNS, "link", "add", bridgeName, "type", "bridge"},
		{"ip", "-n", switchNS, "addr", "add", SwitchIP.String() + "/24", "dev", bridgeName},
		{"ip", "-n", switchNS, "link", "set", bridgeName, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// A handle on the switch the hosts can see (their /run/netns is their own): made before
	// them, so that their mount namespaces inherit it. Their network hook updates its routes.
	if err := os.WriteFile(SwitchNetnsFile(), nil, 0o644); err != nil {
		return err
	}
	return run(ctx, "mount", "--bind", "/run/netns/"+switchNS, SwitchNetnsFile())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
