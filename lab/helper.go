package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	ws "github.com/ferry-project/ferry/lab/workloadstate"
)

// Namespace is the containerd namespace the lab uses (the ctr default).
const Namespace = "default"

// LogPath is where a container's stdout and stderr go on its host. ferry-receiver uses the same
// convention for restored containers.
func LogPath(ns, id string) string { return filepath.Join("/var/lib/ferry/logs", ns, id+".log") }

func connect(ctx context.Context) (*containerd.Client, context.Context, error) {
	c, err := containerd.New("/run/containerd/containerd.sock", containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to this host's containerd: %w", err)
	}
	return c, namespaces.WithNamespace(ctx, Namespace), nil
}

// Records are kept per container name and per workload process (its nonce): containers with the
// same name on different hosts are different workloads.
func recordPath(name, nonce string) string {
	return filepath.Join(StateDir, "containers", name, nonce+".json")
}

func readRecord(name, nonce string) (*ws.Record, error) {
	b, err := os.ReadFile(recordPath(name, nonce))
	if err != nil {
		return nil, err
	}
	var r ws.Record
	return &r, json.Unmarshal(b, &r)
}

func writeRecord(r *ws.Record) error {
	key := r.Nonce
	if !r.Workload {
		key = "cmd-" + r.Host
	}
	p := recordPath(r.Name, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return os.WriteFile(p, b, 0o644)
}

// HelperImport imports the lab image tar into this host's containerd and unpacks it.
func HelperImport(ctx context.Context, tarPath string) error {
	c, ctx, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	imgs, err := c.Import(ctx, f)
	if err != nil {
		return fmt.Errorf("import %s: %w", tarPath, err)
	}
	for _, i := range imgs {
		if err := containerd.NewImage(c, i).Unpack(ctx, containerd.DefaultSnapshotter); err != nil {
			return fmt.Errorf("unpack %s: %w", i.Name, err)
		}
	}
	return nil
}

// RunOptions describe a lab container.
type RunOptions struct {
	Name     string
	MemMiB   int
	DirtyMiB float64
	Command  []string // instead of the workload
	// Volume is PATH or PATH:zfs: a host directory under /srv (with :zfs, a dataset of the
	// host's pool mounted there) bind-mounted at /data; the workload writes VolumeMiB to it.
	Volume    string
	VolumeMiB int
	// Hardened adds what a production container has and a migration must keep: the default
	// seccomp profile, no_new_privs, a reduced capability set, and cgroup limits (memory, CPU
	// quota, pids).
	Hardened bool
	// User is UID:GID (numeric) for the container's process; empty: root.
	User string
	// IP gives the container its own network namespace on the host's container bridge, with
	// this address (ferry-lab run --net allocates it); empty: loopback only.
	IP string
	// Sessions makes the workload serve TCP sessions on SessionPort (needs IP).
	Sessions bool
}

// HardenedCaps is the capability set of a hardened lab container.
var HardenedCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}

// Hardened containers' cgroup limits (the memory limit is per MiB of workload memory, plus slack).
const (
	HardenedPids      = 64
	HardenedCPUQuota  = 50000 // µs per HardenedCPUPeriod: half a CPU
	HardenedCPUPeriod = 100000
)

// HardenedMemoryLimit is the memory limit of a hardened container holding memMiB.
func HardenedMemoryLimit(memMiB int) uint64 { return uint64(2*memMiB+256) << 20 }

// HelperRun starts a container from the lab image on this host.
func HelperRun(ctx context.Context, host string, o RunOptions) (err error) {
	c, ctx, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	img, err := c.GetImage(ctx, ImageRef)
	if err != nil {
		return fmt.Errorf("lab image: %w", err)
	}
	args := o.Command
	workload := len(args) == 0
	if workload {
		args = []string{"/usr/local/bin/ferry-workload", "--mem", strconv.Itoa(o.MemMiB), "--dirty", strconv.FormatFloat(o.DirtyMiB, 'f', -1, 64)}
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithHostname(o.Name)}
	var volPath, dataset string
	if o.Volume != "" {
		if volPath, dataset, err = makeVolume(ctx, o.Name, o.Volume); err != nil {
			return err
		}
		specOpts = append(specOpts, oci.WithMounts([]specs.Mount{{Source: volPath, Destination: ws.VolumeDest, Type: "bind", Options: []string{"rbind", "rw"}}}))
		if workload {
			args = append(args, "--volume", ws.VolumeDest, "--volume-mib", strconv.Itoa(o.VolumeMiB))
		}
	}
	if o.Sessions {
		if o.IP == "" || !workload {
			return fmt.Errorf("--sessions needs --net and the workload")
		}
		args = append(args, "--listen", fmt.Sprintf(":%d", SessionPort))
	}
	specOpts = append(specOpts, oci.WithProcessArgs(args...))
	if o.Hardened {
		specOpts = append(specOpts, seccomp.WithDefaultProfile(), oci.WithNoNewPrivileges, oci.WithCapabilities(HardenedCaps),
			oci.WithMemoryLimit(HardenedMemoryLimit(o.MemMiB)), oci.WithPidsLimit(HardenedPids),
			oci.WithCPUCFS(HardenedCPUQuota, HardenedCPUPeriod))
	}
	if o.User != "" {
		var uid, gid uint32
		if _, err := fmt.Sscanf(o.User, "%d:%d", &uid, &gid); err != nil || fmt.Sprintf("%d:%d", uid, gid) != o.User {
			return fmt.Errorf("--user %q: want UID:GID, both numbers", o.User)
		}
		if !o.Hardened {
			return fmt.Errorf("--user needs --hardened (the workload writes to root's directories; hardened gives it its capabilities as ambient ones)")
		}
		// A non-root process loses its capabilities at execve unless they are ambient.
		specOpts = append(specOpts, oci.WithUIDGID(uid, gid), oci.WithAmbientCapabilities(HardenedCaps))
	}
	if o.IP != "" {
		ip, err := netip.ParseAddr(o.IP)
		if err != nil {
			return fmt.Errorf("--ip: %w", err)
		}
		nsPath, err := setupContainerNet(ctx, o.Name, ip)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				_ = teardownContainerNet(context.Background(), o.Name)
			}
		}()
		specOpts = append(specOpts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath}))
	}
	ctr, err := c.NewContainer(ctx, o.Name,
		containerd.WithImage(img),
		containerd.WithNewSnapshot(o.Name, img),
		containerd.WithNewSpec(specOpts...),
		containerd.WithContainerLabels(map[string]string{"ferry-lab": "1"}),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("a container %q already exists on %s", o.Name, host)
		}
		return err
	}
	logPath := LogPath(Namespace, o.Name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return err
	}
	task, err := ctr.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		_ = ctr.Delete(ctx, containerd.WithSnapshotCleanup)
		return err
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		_ = ctr.Delete(ctx, containerd.WithSnapshotCleanup)
		return err
	}
	rec := &ws.Record{Name: o.Name, Host: host, MemMiB: o.MemMiB, Created: time.Now(), Workload: workload, Volume: volPath, Dataset: dataset}
	if workload {
		// Wait for the workload's first state: its nonce identifies this very process.
		var st ws.State
		err := waitFor(ctx, 120*time.Second, func() error {
			var err error
			st, err = readWorkload(task.Pid())
			return err
		})
		if err != nil {
			return fmt.Errorf("the workload did not publish its state: %w (log: %s)", err, logPath)
		}
		rec.Nonce, rec.LastCounter = st.Nonce, st.Counter
	}
	return writeRecord(rec)
}

func readWorkload(pid uint32) (ws.State, error) {
	var st ws.State
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, ws.StatePath))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// CheckResult is what `ferry-lab check` reports.
type CheckResult struct {
	Host     string   `json:"host"`
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
	State    ws.State `json:"state"`
}

// HelperCheck proves the workload called name runs here and lost nothing.
func HelperCheck(ctx context.Context, host, name string) (*CheckResult, error) {
	res := &CheckResult{Host: host, Name: name}
	c, ctx, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctr, err := c.LoadContainer(ctx, name)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("no container %q on %s", name, host))
		return res, nil
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("container %q on %s has no task", name, host))
		return res, nil
	}
	status, err := task.Status(ctx)
	if err != nil {
		return nil, err
	}
	if status.Status != containerd.Running {
		res.Problems = append(res.Problems, fmt.Sprintf("task %q on %s is %s, not running", name, host, status.Status))
		return res, nil
	}
	s1, err := readWorkload(task.Pid())
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("%s does not publish the workload's state (%v): it is not the lab workload", name, err))
		return res, nil
	}
	rec, err := readRecord(name, s1.Nonce)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("the workload in %s (nonce %s) is not a process the lab started as %s: it was restarted", name, s1.Nonce, name))
		return res, nil
	}
	// Ask the workload to verify all its memory and volume now, and wait for the answer.
	id := fmt.Sprintf("check-%d", time.Now().UnixNano())
	root := fmt.Sprintf("/proc/%d/root", task.Pid())
	// Whole or not at all: the workload reads the file every tick, and a read between
	// WriteFile's create and its write saw an empty request, answered it (under id "") and
	// removed it; this check then waited for an answer that could not come.
	if err := ws.WriteFile(root+ws.VerifyPath, []byte(id)); err != nil {
		return nil, fmt.Errorf("ask the workload to verify: %w", err)
	}
	var s2 ws.State
	err = waitFor(ctx, 120*time.Second, func() error {
		var err error
		if s2, err = readWorkload(task.Pid()); err != nil {
			return err
		}
		if s2.Verify == nil || s2.Verify.ID != id || s2.Counter <= s1.Counter {
			return errors.New("the workload did not answer the verification request")
		}
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "verification request") {
		return nil, err
	}
	if err != nil {
		answer := "none"
		if s2.Verify != nil {
			answer = fmt.Sprintf("%q", s2.Verify.ID)
		}
		res.Problems = append(res.Problems, fmt.Sprintf("the workload's counter went from %d to %d; its last answer: %s (asked %q); threads: %s",
			s1.Counter, s2.Counter, answer, id, threadStates(task.Pid())))
	}
	// The files are written after the counter advances: read them, then a state published after.
	ticks, err := os.ReadFile(root + ws.TicksPath)
	if err != nil {
		res.Problems = append(res.Problems, "cannot read the ticks file: "+err.Error())
	}
	var volLog []byte
	if rec.Volume != "" {
		if volLog, err = os.ReadFile(root + ws.VolumeDest + "/log"); err != nil {
			res.Problems = append(res.Problems, "cannot read the volume's log: "+err.Error())
		}
	}
	// The state must be one published after those reads: a state older than the files would
	// look like memory older than the filesystem. Ask until one is (a read can miss).
	// The workload appends to its files, then publishes: wait for the state that follows the
	// last line read.
	need := max(s2.Counter, lastCounter(ticks), lastCounter(volLog))
	var s3err error
	for i := 0; i < 50; i++ {
		s3, err := readWorkload(task.Pid())
		if err == nil && s3.Counter >= need {
			// Lines written are those of the state before the files were read (a read cannot
			// see lines written after it); the counter is the later state's.
			s3.Verify, s3.TicksLines, s3.VolumeLogLines = s2.Verify, s2.TicksLines, s2.VolumeLogLines
			s2, s3err = s3, nil
			break
		}
		s3err = fmt.Errorf("the workload published no state past counter %d after its files were read (%v)", need, err)
		time.Sleep(100 * time.Millisecond)
	}
	if s3err != nil {
		res.Problems = append(res.Problems, s3err.Error())
	}
	res.State = s2
	res.Problems = append(res.Problems, ws.Verify(*rec, s1, s2, id, ticks, volLog)...)
	res.OK = len(res.Problems) == 0
	if res.OK {
		rec.Host, rec.LastCounter = host, s2.Counter
		if err := writeRecord(rec); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// ContainerStatus is one container in `ferry-lab status`.
type ContainerStatus struct {
	Host   string `json:"host"`
	Name   string `json:"name"`
	Image  string `json:"image"`
	Status string `json:"status"`
	PID    uint32 `json:"pid,omitempty"`
}

// HelperList lists this host's containers.
func HelperList(ctx context.Context, host string) ([]ContainerStatus, error) {
	c, ctx, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return nil, err
	}
	var out []ContainerStatus
	for _, ctr := range ctrs {
		cs := ContainerStatus{Host: host, Name: ctr.ID(), Status: "no task"}
		if info, err := ctr.Info(ctx); err == nil {
			cs.Image = info.Image
		}
		if t, err := ctr.Task(ctx, nil); err == nil {
			if st, err := t.Status(ctx); err == nil {
				cs.Status, cs.PID = string(st.Status), t.Pid()
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// Stop kills and removes a container (used by tests to clean up between cases).
func HelperRemove(ctx context.Context, name string) error {
	c, ctx, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctr, err := c.LoadContainer(ctx, name)
	if err != nil {
		return err
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil {
			_ = t.Kill(ctx, syscall.SIGKILL)
			if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil {
				return err
			}
		}
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return err
	}
	return teardownContainerNet(ctx, name)
}

// threadStates describes a process's threads (state and where each sleeps) and its freezer
// cgroup, to explain a workload that stopped answering.
func threadStates(pid uint32) string {
	var parts []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		stat, _ := os.ReadFile(t + "/stat")
		wchan, _ := os.ReadFile(t + "/wchan")
		st := "?"
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) {
			st = string(stat[i+2 : i+3])
		}
		parts = append(parts, fmt.Sprintf("%s:%s/%s", filepath.Base(t), st, wchan))
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(cg), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.Contains(f[1], "freezer") {
			if b, err := os.ReadFile("/sys/fs/cgroup/freezer" + f[2] + "/freezer.state"); err == nil {
				parts = append(parts, "freezer "+strings.TrimSpace(string(b)))
			}
		}
	}
	return strings.Join(parts, " ")
}

// lastCounter is the last number of a file of counters (0 if none).
func lastCounter(b []byte) uint64 {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	v, _ := strconv.ParseUint(strings.TrimSpace(lines[len(lines)-1]), 10, 64)
	return v
}
