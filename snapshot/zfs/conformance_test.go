package zfs

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/lab/zfsshim"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/snapshot/snapshottest"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
)

const nsMarker = "FERRY_ZFS_TEST_NS"

var skipReason string

// TestMain runs the package's tests inside a private mount namespace with their own zfs-fuse
// daemon and two pools (one per "host"); the test binary doubles as the lab's zfs shim.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "zfs" {
		os.Exit(zfsshim.Main(os.Args[1:]))
	}
	switch {
	case os.Geteuid() != 0:
		skipReason = "needs root (zfs-fuse, mounts)"
	case !have("zfs-fuse") || !have("unshare"):
		skipReason = "zfs-fuse is not installed (make deps)"
	case os.Getenv(nsMarker) == "":
		// Re-run in a private mount namespace.
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), nsMarker+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "re-exec in a mount namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if skipReason != "" {
		os.Exit(m.Run())
	}
	stop, err := startZFS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "zfs test setup:", err)
		stop()
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func have(c string) bool { _, err := exec.LookPath(c); return err == nil }

var poolDir string

// startZFS gives this namespace private zfs-fuse state, starts the daemon, and creates pools
// "fta" (host A) and "ftb" (host B), each with a parent dataset "ferry" and "vols".
func startZFS() (func(), error) {
	var daemon *exec.Cmd
	var err error
	poolDir, err = os.MkdirTemp("", "ferry-zfs-test-")
	if err != nil {
		return func() {}, err
	}
	stop := func() {
		for _, p := range []string{"fta", "ftb"} {
			_ = exec.Command(zfsshim.Real[:len(zfsshim.Real)-3]+"zpool", "destroy", "-f", p).Run()
		}
		if daemon != nil && daemon.Process != nil {
			_ = daemon.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _, _ = daemon.Process.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = daemon.Process.Kill()
			}
		}
		_ = os.RemoveAll(poolDir)
	}
	// A tmpfs over /run (in this namespace only) holds the daemon's socket and lock.
	for _, m := range []struct{ dst, typ string }{{"/run", "tmpfs"}, {"/var/lib/zfs", "tmpfs"}} {
		if err := unix.Mount("tmpfs", m.dst, m.typ, 0, "mode=755"); err != nil {
			return stop, fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	for _, d := range []string{"/run/zfs", "/run/lock/zfs"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return stop, err
		}
	}
	bin := filepath.Join(poolDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return stop, err
	}
	self, _ := os.Executable()
	if err := os.Symlink(self, filepath.Join(bin, "zfs")); err != nil {
		return stop, err
	}
	os.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	daemon = exec.Command("zfs-fuse", "--no-daemon", "--no-kstat-mount")
	if err := daemon.Start(); err != nil {
		return stop, err
	}
	zpool := func(args ...string) error {
		out, err := exec.Command("/usr/sbin/zpool", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("zpool %v: %w: %s", args, err, out)
		}
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for zpool("list") != nil {
		if time.Now().After(deadline) {
			return stop, fmt.Errorf("zfs-fuse does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []string{"fta", "ftb"} {
		img := filepath.Join(poolDir, p+".img")
		f, err := os.Create(img)
		if err != nil {
			return stop, err
		}
		_ = f.Truncate(2 << 30)
		f.Close()
		if err := zpool("create", "-m", "none", p, img); err != nil {
			return stop, err
		}
		for _, ds := range []string{p + "/ferry", p + "/vols"} {
			if out, err := exec.Command("zfs", "create", ds).CombinedOutput(); err != nil {
				return stop, fmt.Errorf("zfs create %s: %w: %s", ds, err, out)
			}
		}
	}
	return stop, nil
}

// env: host A is pool fta (volumes under <tmp>/A), host B is pool ftb (<tmp>/B).
type env struct {
	root string
	n    int
	mig  int
	// per plan: the target dataset and whether it was created by this move
	target map[string]string // migration id → target dataset
	fresh  map[string]bool
	base   map[string]string // migration id → target's base snapshot (for abort)
}

func pool(h snapshottest.Host) string {
	if h == snapshottest.A {
		return "fta"
	}
	return "ftb"
}

func (e *env) path(h snapshottest.Host) string {
	return filepath.Join(e.root, string(h), fmt.Sprintf("v%d", e.n))
}

func (e *env) NewVolume(t *testing.T) string {
	e.n++
	p := e.path(snapshottest.A)
	out, err := exec.Command("zfs", "create", "-o", "mountpoint="+p, fmt.Sprintf("fta/vols/v%d", e.n)).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs create: %v: %s", err, out)
	}
	return p
}

func (e *env) hostOf(path string) snapshottest.Host {
	return snapshottest.Host(filepath.Base(filepath.Dir(path)))
}

// Plan does what preflight and the receiver's prepare do: find the source dataset and a base
// on the target by guid, or pick a new dataset name.
func (e *env) Plan(t *testing.T, from snapshottest.Host) (snapshot.Driver, snapshot.Mount) {
	e.mig++
	id := fmt.Sprintf("t%d", e.mig)
	src := e.path(from)
	ds, err := DatasetAt(src)
	if err != nil || ds == "" {
		t.Fatalf("no dataset mounted at %s: %v", src, err)
	}
	snaps, err := Snapshots(ds)
	if err != nil {
		t.Fatal(err)
	}
	to := snapshottest.Other(from)
	m := snapshot.Mount{Name: "vol-" + id, Source: src, Dataset: ds}
	target, guid, err := FindBase(pool(to), snaps)
	if err != nil {
		t.Fatal(err)
	}
	if target != "" {
		for _, s := range snaps {
			if s.GUID == guid {
				m.Base = Short(s.Name)
			}
		}
		tsnaps, _ := Snapshots(target)
		for _, s := range tsnaps {
			if s.GUID == guid {
				e.base[id] = s.Name
			}
		}
	} else {
		target, err = NewDatasetName(pool(to)+"/ferry", fmt.Sprintf("v%d", e.n))
		if err != nil {
			t.Fatal(err)
		}
		e.fresh[id] = true
	}
	e.target[id] = target
	d := &Driver{Streams: receiver{t, target}, MigrationID: id}
	return d, m
}

func (e *env) id(m snapshot.Mount) string { return strings.TrimPrefix(m.Name, "vol-") }

func (e *env) Activate(t *testing.T, m snapshot.Mount) string {
	to := snapshottest.Other(e.hostOf(m.Source))
	p := e.path(to)
	if err := MountAt(e.target[e.id(m)], p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) CommitTarget(t *testing.T, m snapshot.Mount) {
	ds := e.target[e.id(m)]
	snaps, err := Snapshots(ds)
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot on %s: %v", ds, err)
	}
	if err := Prune(ds, snaps[len(snaps)-1].Name); err != nil {
		t.Fatal(err)
	}
	_ = Unretire(ds)
}

func (e *env) AbortTarget(t *testing.T, m snapshot.Mount) {
	id := e.id(m)
	var err error
	if e.fresh[id] {
		err = Destroy(e.target[id])
	} else {
		err = RollbackTo(e.base[id])
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) TargetResidue(t *testing.T, m snapshot.Mount) string {
	id := e.id(m)
	ds := e.target[id]
	if e.fresh[id] {
		if out, err := exec.Command("zfs", "list", "-H", "-o", "name", ds).CombinedOutput(); err == nil {
			return "dataset " + strings.TrimSpace(string(out))
		}
		return ""
	}
	snaps, _ := Snapshots(ds)
	if len(snaps) == 0 || snaps[len(snaps)-1].Name != e.base[id] {
		return fmt.Sprintf("snapshots after the base on %s: %v", ds, snaps)
	}
	return ""
}

// receiver answers zfs streams as ferry-receiver does: `zfs receive` into the planned dataset,
// then one message with the outcome.
type receiver struct {
	t       *testing.T
	dataset string
}

func (r receiver) OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, _ := net.FileConn(f)
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	go func() {
		defer b.Close()
		err := Receive(ctx, b, r.dataset)
		c := wire.NewConn(b)
		if err != nil {
			_ = c.SendError(wire.TypeStream, err)
			return
		}
		_ = c.Send(wire.TypeStream, nil)
	}()
	return a, nil
}

func TestConformance(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	e := &env{root: t.TempDir(), target: map[string]string{}, fresh: map[string]bool{}, base: map[string]string{}}
	t.Cleanup(func() { // before the temp dir goes: datasets are mounted in it
		for _, parent := range []string{"fta/vols", "fta/ferry", "ftb/vols", "ftb/ferry"} {
			out, _ := exec.Command("zfs", "list", "-H", "-o", "name", "-d", "1", "-t", "filesystem", parent).Output()
			for _, ds := range strings.Fields(string(out)) {
				if ds != parent {
					if err := Destroy(ds); err != nil {
						t.Errorf("destroy %s: %v", ds, err)
					}
				}
			}
		}
	})
	snapshottest.Run(t, e)
}

// Features: zfs-fuse (the lab's ZFS) stores no extended attributes, hence no ACLs; OpenZFS does,
// and `zfs send` carries them.
func (e *env) Features() snapshottest.Features {
	return snapshottest.Features{Xattrs: false, ACLs: false, Devices: true}
}
