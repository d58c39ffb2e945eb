package checkpoint

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-project/ferry/internal/failpoint"
)

// DumpRequest describes one dump of a runc container.
type DumpRequest struct {
	State     *RuncState
	ImagesDir string // receives CRIU's images and descriptors.json
	WorkDir   string // receives dump.log and stats-dump
	// LeaveRunning keeps the tasks after the dump. A container frozen (paused) before the dump
	// stays frozen: CRIU restores the freezer state it found.
	LeaveRunning   bool
	TCPEstablished bool
	FileLocks      bool
	// PageServer, when set, is a connected socket to a CRIU page server: memory pages go there
	// instead of into ImagesDir (disk-less dump).
	PageServer *os.File
	// LazyPages (post-copy): the dump writes everything but the memory, then serves pages on
	// PageServer to the target's lazy-pages daemon until it has them all; Dump returns then.
	// Ready is closed as soon as the image files are complete and pages can be served.
	LazyPages bool
	Ready     chan<- struct{}
}

// DumpStats are CRIU's own figures for a dump.
type DumpStats struct {
	FreezingTime time.Duration `json:"freezing_time"`
	FrozenTime   time.Duration `json:"frozen_time"`
	MemdumpTime  time.Duration `json:"memdump_time"`
	MemwriteTime time.Duration `json:"memwrite_time"`
	PagesScanned uint64        `json:"pages_scanned"`
	PagesSkipped uint64        `json:"pages_skipped_parent"`
	PagesWritten uint64        `json:"pages_written"`
	PagesLazy    uint64        `json:"pages_lazy"`
}

// descriptorsFile is runc's record of the init's stdio, required by `runc restore`.
const descriptorsFile = "descriptors.json"

// Dump checkpoints the container's process tree into req.ImagesDir. The caller must have frozen
// the container if it wants it to stay frozen (LeaveRunning). Dump is not interruptible: CRIU
// runs to completion (it holds the tasks; killing it midway would leave them to CRIU's cleanup).
func Dump(ctx context.Context, req DumpRequest) (*DumpStats, error) {
	st := req.State
	if err := writeDescriptors(req.ImagesDir, st.ExternalDescriptors); err != nil {
		return nil, err
	}
	imgDir, err := os.Open(req.ImagesDir)
	if err != nil {
		return nil, err
	}
	defer imgDir.Close()
	workDir, err := os.Open(req.WorkDir)
	if err != nil {
		return nil, err
	}
	defer workDir.Close()

	opts, err := dumpOptions(req)
	if err != nil {
		return nil, err
	}
	opts.ImagesDirFd = proto.Int32(int32(imgDir.Fd()))
	opts.WorkDirFd = proto.Int32(int32(workDir.Fd()))

	c := newCriu()
	defer c.Cleanup()
	if req.PageServer != nil {
		// CRIU (swrk) uses the page server socket by number, so `criu swrk` must inherit it:
		// a duplicate without close-on-exec lives only while the swrk process starts.
		fd, err := unix.Dup(int(req.PageServer.Fd()))
		if err != nil {
			return nil, err
		}
		err = c.Prepare()
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("start criu: %w", err)
		}
		opts.Ps = &rpc.CriuPageServerInfo{Fd: proto.Int32(int32(fd))}
		if req.LazyPages {
			// CRIU's RPC ignores a lazy dump's socket (and address): it would listen on TCP, on
			// every interface, unauthenticated. Its configuration file, applied over the RPC
			// options, can still name the socket.
			conf := filepath.Join(req.WorkDir, "lazy-dump.conf")
			if err := os.WriteFile(conf, []byte(fmt.Sprintf("ps-socket %d\n", fd)), 0o600); err != nil {
				return nil, err
			}
			opts.Ps = &rpc.CriuPageServerInfo{Port: proto.Int32(0)}
			opts.ConfigFile = proto.String(conf)
			opts.LazyPages = proto.Bool(true)
			ready, err := statusPipe(req.Ready)
			if err != nil {
				return nil, err
			}
			defer ready.Close()
			opts.StatusFd = proto.Int32(int32(ready.Fd())) // CRIU opens it through /proc
		}
	}
	if err := c.Dump(opts, dumpNotify()); err != nil {
		// A criu that died mid-request shows only as a broken socket: say what happened.
		var ee *exec.ExitError
		if errors.As(c.Cleanup(), &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				err = fmt.Errorf("criu was killed (%s) in the middle of the dump: %w", unix.SignalName(ws.Signal()), err)
			}
		}
		return nil, fmt.Errorf("criu dump of pid %d: %w%s", st.InitProcessPid, criuFailure(err), LogErrors(filepath.Join(req.WorkDir, "dump.log")))
	}
	return readDumpStats(workDir)
}

// dumpNotify is nil in product builds: CRIU then sends no notifications (each is a round trip
// on the frozen path). Test builds get one at CRIU's pre-dump stage, which CRIU waits on before
// it seizes any task: the failpoint criu/pre-dump, where a fault (killcriu, error) lands at a
// known moment instead of racing a dump that may take only a few milliseconds.
func dumpNotify() criu.Notify {
	if !failpoint.Enabled {
		return nil
	}
	return preDumpFailpoint{}
}

type preDumpFailpoint struct{ criu.NoNotify }

func (preDumpFailpoint) PreDump() error { return failpoint.Inject("criu/pre-dump") }

// statusPipe returns the write end of a pipe CRIU writes to once a lazy dump's images are
// complete; a goroutine closes ready when that happens.
func statusPipe(ready chan<- struct{}) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		defer r.Close()
		b := make([]byte, 1)
		if n, _ := r.Read(b); n == 1 && ready != nil {
			close(ready)
		}
	}()
	return w, nil
}

// LazyPagesDaemon starts `criu lazy-pages` for a post-copy restore: it listens in workDir for the
// restore and fetches pages over conn from the source's lazy dump, on demand and in the
// background, until it has them all (then it exits 0).
func LazyPagesDaemon(conn *os.File, imagesDir, workDir string) (*exec.Cmd, error) {
	cmd := exec.Command("criu", "lazy-pages", "--page-server", "--ps-socket", "3",
		"--images-dir", imagesDir, "--work-dir", workDir, "-o", "lazy-pages.log", "-v4")
	cmd.ExtraFiles = []*os.File{conn}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start criu lazy-pages: %w", err)
	}
	return cmd, nil
}

// PageServer runs `criu page-server` on the connected socket conn, writing the pages it
// receives into imagesDir (and its log into workDir), until the dump closes the connection.
func PageServer(ctx context.Context, conn *os.File, imagesDir, workDir string) error {
	cmd := exec.CommandContext(ctx, "criu", "page-server", "--ps-socket", "3",
		"--images-dir", imagesDir, "--work-dir", workDir, "-o", "page-server.log", "-v4")
	cmd.ExtraFiles = []*os.File{conn}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("criu page-server: %w: %s%s", err, strings.TrimSpace(out.String()), LogErrors(filepath.Join(workDir, "page-server.log")))
	}
	return nil
}

// dumpOptions builds the CRIU options runc 1.1 would use for this container, so that
// `runc restore` on the target finds every external mount under the key it expects.
func dumpOptions(req DumpRequest) (*rpc.CriuOpts, error) {
	st := req.State
	opts := &rpc.CriuOpts{
		Pid:             proto.Int32(int32(st.InitProcessPid)),
		LogLevel:        proto.Int32(4),
		LogFile:         proto.String("dump.log"),
		Root:            proto.String(st.Config.Rootfs),
		ManageCgroups:   proto.Bool(true),
		LeaveRunning:    proto.Bool(req.LeaveRunning),
		TcpEstablished:  proto.Bool(req.TCPEstablished),
		FileLocks:       proto.Bool(req.FileLocks),
		OrphanPtsMaster: proto.Bool(true),
		// runc always sets this: it does not manage network devices, so a container's own
		// network namespace is recreated empty (an external one is joined instead).
		EmptyNs: proto.Uint32(unix.CLONE_NEWNET),
		// Not CRIU's network lock: when connections move (tcp-established), ferry has locked
		// the container's network itself from the freeze (network.Lock, until the source is
		// retired or thawed); without tcp-established no connection is dumped that a lock
		// would protect. CRIU's default lock runs iptables-restore up to five times to unlock
		// — measured at 66 ms of downtime per side on the lab.
		NetworkLock: rpc.CriuNetworkLockMethod_SKIP.Enum(),
	}
	if p := freezerPath(st); p != "" {
		opts.FreezeCgroup = proto.String(p)
	}
	for _, ns := range []struct{ typ, name, key string }{
		{"NEWNET", "net", "extRootNetNS"},
		{"NEWPID", "pid", "extRootPidNS"},
	} {
		p := st.namespacePath(ns.typ)
		if p == "" {
			continue
		}
		var s unix.Stat_t
		if err := unix.Stat(p, &s); err != nil {
			return nil, fmt.Errorf("external %s namespace %s: %w", ns.name, p, err)
		}
		opts.External = append(opts.External, fmt.Sprintf("%s[%d]:%s", ns.name, s.Ino, ns.key))
	}
	ext, err := externalMounts(st)
	if err != nil {
		return nil, err
	}
	opts.ExtMnt = ext
	return opts, nil
}

func freezerPath(st *RuncState) string {
	if p := st.CgroupPaths["freezer"]; p != "" {
		return p
	}
	return st.CgroupPaths[""] // cgroup v2: the unified directory
}

// mountKey is runc's key for a mount: its destination with symlinks resolved inside the rootfs.
func mountKey(rootfs, dest string) string {
	d := strings.TrimPrefix(dest, rootfs)
	if j, err := securejoin.SecureJoin(rootfs, d); err == nil {
		d = j[len(rootfs):]
	}
	return d
}

func externalMounts(st *RuncState) ([]*rpc.ExtMountMap, error) {
	var ext []*rpc.ExtMountMap
	add := func(k, v string) { ext = append(ext, &rpc.ExtMountMap{Key: proto.String(k), Val: proto.String(v)}) }
	rootfs := st.Config.Rootfs
	v1 := !isUnified()
	for _, m := range st.Config.Mounts {
		switch m.Device {
		case "bind":
			k := mountKey(rootfs, m.Destination)
			add(k, k)
		case "cgroup":
			// cgroup v1 without a cgroup namespace: runc bind-mounts each hierarchy.
			if !v1 || st.hasNamespace("NEWCGROUP") {
				continue
			}
			hs, err := v1Hierarchies()
			if err != nil {
				return nil, err
			}
			for _, h := range hs {
				k := mountKey(rootfs, filepath.Join(m.Destination, filepath.Base(h)))
				add(k, k)
			}
		}
	}
	for _, p := range st.Config.MaskPaths {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/root/%s", st.InitProcessPid, p))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("masked path %s: %w", p, err)
		}
		if fi.IsDir() {
			continue // masked with a read-only tmpfs, which CRIU dumps itself
		}
		add(p, "/dev/null")
	}
	for _, d := range st.Config.Devices {
		k := mountKey(rootfs, d.Path)
		add(k, k)
	}
	return ext, nil
}

func isUnified() bool {
	var s unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &s) == nil && s.Type == unix.CGROUP2_SUPER_MAGIC
}

// v1Hierarchies lists the mount points of cgroup v1 hierarchies this process belongs to, as
// runc's getCgroupMounts does.
func v1Hierarchies() ([]string, error) {
	own := map[string]bool{}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(cg), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[1] != "" {
			for _, s := range strings.Split(f[1], ",") {
				own[s] = true
			}
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(qf[2], ",") {
			if own[o] && !seen[o] {
				seen[o] = true
				if !contains(out, pf[4]) {
					out = append(out, pf[4])
				}
			}
		}
	}
	return out, sc.Err()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func writeDescriptors(dir string, fds []string) error {
	if fds == nil {
		fds = []string{}
	}
	b, err := json.Marshal(fds)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, descriptorsFile), b, 0o600)
}

func readDumpStats(workDir *os.File) (*DumpStats, error) {
	if fi, err := os.Stat(filepath.Join(workDir.Name(), stats.StatsDump)); err != nil || fi.Size() < 12 {
		return nil, fmt.Errorf("CRIU wrote no usable %s", stats.StatsDump)
	}
	s, err := stats.CriuGetDumpStats(workDir)
	if err != nil {
		return nil, fmt.Errorf("read CRIU dump stats: %w", err)
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return &DumpStats{
		FreezingTime: us(s.GetFreezingTime()), FrozenTime: us(s.GetFrozenTime()),
		MemdumpTime: us(s.GetMemdumpTime()), MemwriteTime: us(s.GetMemwriteTime()),
		PagesScanned: s.GetPagesScanned(), PagesSkipped: s.GetPagesSkippedParent(),
		PagesWritten: s.GetPagesWritten(), PagesLazy: s.GetPagesLazy(),
	}, nil
}

// benignLogErrors are lines CRIU logs as errors and then carries on: they explain nothing.
// CRIU 4.2 tries to raise its own RLIMIT_NOFILE hard limit, which needs CAP_SYS_RESOURCE.
var benignLogErrors = []string{"rlimit: Can't setup RLIMIT_NOFILE for self"}

func benignLogError(l string) bool {
	for _, b := range benignLogErrors {
		if strings.Contains(l, b) {
			return true
		}
	}
	return false
}

// criuFailure returns go-criu's error for a failed request, minus the message CRIU reports as
// its first error when that is a benign one (the log's real errors follow in LogErrors).
func criuFailure(err error) error {
	if err != nil && benignLogError(err.Error()) {
		return benignFirstError{err}
	}
	return err
}

type benignFirstError struct{ err error }

func (e benignFirstError) Error() string { return "operation failed" }
func (e benignFirstError) Unwrap() error { return e.err }

// LogErrors extracts the lines of a CRIU log that explain a failure.
func LogErrors(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var errs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "Error (") && !benignLogError(l) {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return " (see " + path + ")"
	}
	if len(errs) > 6 {
		errs = errs[len(errs)-6:]
	}
	return "\nCRIU says (" + path + "):\n  " + strings.Join(errs, "\n  ")
}

// RestoreStats are CRIU's own figures for a restore.
type RestoreStats struct {
	PagesRestored uint64        `json:"pages_restored"`
	ForkingTime   time.Duration `json:"forking_time"`
	RestoreTime   time.Duration `json:"restore_time"`
}

// ReadRestoreStats reads stats-restore from a restore's work directory.
func ReadRestoreStats(workDir string) (*RestoreStats, error) {
	if fi, err := os.Stat(filepath.Join(workDir, stats.StatsRestore)); err != nil || fi.Size() < 12 {
		return nil, fmt.Errorf("no usable %s in %s", stats.StatsRestore, workDir)
	}
	d, err := os.Open(workDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	s, err := stats.CriuGetRestoreStats(d)
	if err != nil {
		return nil, err
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return &RestoreStats{PagesRestored: s.GetPagesRestored(), ForkingTime: us(s.GetForkingTime()), RestoreTime: us(s.GetRestoreTime())}, nil
}
