package migrate

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/hostinfo"
	"github.com/ferry-project/ferry/network"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport/wire"
)

// LocalSource is this host's containerd and CRIU.
type LocalSource struct {
	RT       *runtime.Client
	StateDir string
}

var _ Source = (*LocalSource)(nil)

// Host implements Source.
func (s *LocalSource) Host() string {
	h, _ := os.Hostname()
	return h
}

// Facts implements Source.
func (s *LocalSource) Facts(ctx context.Context) wire.HostFacts {
	return hostinfo.Gather(ctx, s.RT, s.StateDir)
}

// Describe implements Source.
func (s *LocalSource) Describe(ctx context.Context, id string) (*SourceContainer, error) {
	info, err := s.RT.Inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	sc := &SourceContainer{Record: info.Record, Spec: info.Spec, Status: string(info.Status)}
	sc.WritableDir, err = s.RT.WritableDir(ctx, info.Record.Snapshotter, info.Record.SnapshotKey)
	if err != nil {
		return nil, err
	}
	sc.FSBytes = diskUsage(sc.WritableDir)
	sc.Volumes, sc.Problems = Volumes(info.Spec, os.Stat)
	if p := netnsPath(info.Spec); p != "" {
		a, err := network.Read(ctx, p)
		if err != nil {
			sc.Problems = append(sc.Problems, fmt.Sprintf("the container's network cannot move: %v", err))
		} else {
			sc.Record.Network = a
		}
		if _, err := exec.LookPath("nft"); err != nil {
			sc.Problems = append(sc.Problems, fmt.Sprintf("the container's network cannot be locked while it moves: %s has no nft (install nftables)", s.Host()))
		}
	}
	zfsErr := zfs.Available()
	for i := range sc.Volumes {
		v := &sc.Volumes[i]
		v.Bytes = diskUsage(v.Path)
		sc.FSBytes += v.Bytes
		if zfsErr != nil {
			continue
		}
		ds, err := zfs.DatasetAt(v.Path)
		if err != nil || ds == "" {
			continue
		}
		snaps, err := zfs.Snapshots(ds)
		if err != nil {
			return nil, err
		}
		v.ZFS = &wire.ZFSVolume{Dataset: ds, Snapshots: snaps}
	}
	if dir, err := s.RT.RuncRoot(info.Record); err == nil {
		if st, err := checkpoint.LoadRuncState(dir); err == nil {
			sc.MemoryBytes = memoryUsage(st)
			if p := checkpoint.CredentialProblem(st); p != "" {
				sc.Problems = append(sc.Problems, fmt.Sprintf("container %q cannot be checkpointed on %s: %s", id, s.Host(), p))
			}
			if v, err := checkpoint.Version(ctx); err == nil {
				var u unix.Utsname
				_ = unix.Uname(&u)
				if p := checkpoint.InetSocketProblem(st, v, unix.ByteSliceToString(u.Release[:])); p != "" {
					sc.Problems = append(sc.Problems, fmt.Sprintf("container %q cannot be checkpointed on %s: %s", id, s.Host(), p))
				}
			}
		}
	}
	return sc, nil
}

// Freeze implements Source: the tasks stop, and a network namespace that moves with the
// container is locked (network.Lock) until the source is retired or thawed.
func (s *LocalSource) Freeze(ctx context.Context, id string) error {
	p, err := s.movingNetns(ctx, id)
	if err != nil {
		return err
	}
	if err := s.RT.Pause(ctx, id); err != nil {
		return err
	}
	if p != "" {
		return network.Lock(ctx, p)
	}
	return nil
}

// Thaw implements Source: the network first, so the tasks wake to a working one.
func (s *LocalSource) Thaw(ctx context.Context, id string) error {
	p, err := s.movingNetns(ctx, id)
	if err != nil {
		return err
	}
	if p != "" {
		if err := network.Unlock(ctx, p); err != nil {
			return err
		}
	}
	return s.RT.Resume(ctx, id)
}

// movingNetns is the named network namespace the container joins ("" if none).
func (s *LocalSource) movingNetns(ctx context.Context, id string) (string, error) {
	info, err := s.RT.Inspect(ctx, id)
	if err != nil {
		return "", err
	}
	return netnsPath(info.Spec), nil
}

// runcState reads the container's runc state (what CRIU needs to dump it as runc would).
func (s *LocalSource) runcState(ctx context.Context, id string) (*checkpoint.RuncState, error) {
	info, err := s.RT.Inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	dir, err := s.RT.RuncRoot(info.Record)
	if err != nil {
		return nil, err
	}
	return checkpoint.LoadRuncState(dir)
}

// PreCopy implements Source.
func (s *LocalSource) PreCopy(ctx context.Context, id string, pageServers []*os.File) (PreCopySession, error) {
	st, err := s.runcState(ctx, id)
	if err != nil {
		return nil, err
	}
	sess, err := checkpoint.StartSession(checkpoint.SessionRequest{State: st, PageServers: pageServers})
	if err != nil {
		return nil, err
	}
	return localSession{sess}, nil
}

type localSession struct{ s *checkpoint.Session }

func (l localSession) PreDump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	return l.s.PreDump(ctx, checkpoint.RoundRequest{ImagesDir: spec.ImagesDir, WorkDir: spec.WorkDir, Parent: spec.Parent})
}

func (l localSession) Dump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	return l.s.Dump(ctx, checkpoint.RoundRequest{ImagesDir: spec.ImagesDir, WorkDir: spec.WorkDir, Parent: spec.Parent,
		TCPEstablished: spec.TCPEstablished})
}

func (l localSession) Close() error { return l.s.Close() }

// Dump implements Source: the tasks stay (frozen) after the dump.
func (s *LocalSource) Dump(ctx context.Context, id string, spec DumpSpec) (*checkpoint.DumpStats, error) {
	st, err := s.runcState(ctx, id)
	if err != nil {
		return nil, err
	}
	return checkpoint.Dump(ctx, checkpoint.DumpRequest{State: st, ImagesDir: spec.ImagesDir, WorkDir: spec.WorkDir,
		LeaveRunning: true, PageServer: spec.PageServer, LazyPages: spec.LazyPages, Ready: spec.Ready,
		TCPEstablished: spec.TCPEstablished})
}

// Retire implements Source.
func (s *LocalSource) Retire(ctx context.Context, id string) error {
	info, err := s.RT.Inspect(ctx, id)
	if err != nil {
		return err
	}
	// The container's network moved with it. Cut this copy off first: killing the frozen task
	// closes its sockets, and their FIN/RST must not reach the peers that the target now serves.
	p := netnsPath(info.Spec)
	if p != "" {
		if err := network.Isolate(ctx, p); err != nil {
			return err
		}
	}
	if err := s.RT.Remove(ctx, id); err != nil {
		return err
	}
	if p != "" { // its namespace here would hold its addresses twice
		return network.Remove(ctx, p)
	}
	return nil
}

// diskUsage is the space a tree occupies (allocated blocks; sparse files count what they use).
func diskUsage(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += uint64(st.Blocks) * 512
			} else {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}

// memoryUsage reads the container's memory cgroup (v1 usage_in_bytes or v2 memory.current).
func memoryUsage(st *checkpoint.RuncState) uint64 {
	for _, p := range []string{
		filepath.Join(st.CgroupPaths["memory"], "memory.usage_in_bytes"),
		filepath.Join(st.CgroupPaths[""], "memory.current"),
	} {
		if b, err := os.ReadFile(p); err == nil {
			if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return v
			}
		}
	}
	return 0
}

// ImageBlobs implements Source.
func (s *LocalSource) ImageBlobs(ctx context.Context, name string) (wire.Descriptor, []wire.Descriptor, error) {
	return s.RT.ImageBlobs(ctx, name)
}

// OpenBlob implements Source.
func (s *LocalSource) OpenBlob(ctx context.Context, d wire.Descriptor) (io.ReadCloser, error) {
	return s.RT.OpenBlob(ctx, d)
}
