// Package runtime is ferry's view of containerd: what a container is (its metadata, spec, task
// and writable layer), and the few operations a migration needs on either host. Nothing here
// knows about migrations; migrate/ and the receiver decide when to call what.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	cerrdefs "github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf/types"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// DefaultAddress is containerd's socket.
const DefaultAddress = "/run/containerd/containerd.sock"

// DefaultRuncRoot is where containerd's runc shim keeps runc state unless the container's
// runtime options set another root.
const DefaultRuncRoot = "/run/containerd/runc"

// LogPath is where ferry (and the lab) send a container's stdout and stderr on a host:
// containerd's log-file IO gives the task pipes, which CRIU can hand over on restore.
func LogPath(ns, id string) string { return filepath.Join("/var/lib/ferry/logs", ns, id+".log") }

// Client talks to one host's containerd in one namespace.
type Client struct {
	c  *containerd.Client
	ns string
}

// Connect opens a client. It fails clearly when containerd is not running.
func Connect(ctx context.Context, address, namespace string) (*Client, error) {
	c, err := containerd.New(address, containerd.WithTimeout(5*time.Second), containerd.WithDefaultNamespace(namespace))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s (is it running?): %w", address, err)
	}
	return &Client{c: c, ns: namespace}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.c.Close() }

// Namespace is the containerd namespace this client works in.
func (c *Client) Namespace() string { return c.ns }

func (c *Client) with(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.ns)
}

// Version is the containerd daemon's version.
func (c *Client) Version(ctx context.Context) (string, error) {
	v, err := c.c.Version(ctx)
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// Info is a container as ferry sees it.
type Info struct {
	Record wire.Container
	Spec   *specs.Spec
	Status containerd.ProcessStatus // "" when it has no task
	PID    uint32
}

func classify(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w", what, errors.Join(err, errdefs.ErrNotFound))
	case cerrdefs.IsAlreadyExists(err):
		return fmt.Errorf("%s: %w", what, errors.Join(err, errdefs.ErrConflict))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Inspect reads a container's metadata, spec and task state.
func (c *Client) Inspect(ctx context.Context, id string) (*Info, error) {
	ctx = c.with(ctx)
	ctr, err := c.c.LoadContainer(ctx, id)
	if err != nil {
		return nil, classify(err, fmt.Sprintf("container %q in namespace %q", id, c.ns))
	}
	ci, err := ctr.Info(ctx)
	if err != nil {
		return nil, classify(err, "container info")
	}
	info := &Info{Record: recordOf(c.ns, ci)}
	var spec specs.Spec
	if err := json.Unmarshal(ci.Spec.GetValue(), &spec); err != nil {
		return nil, fmt.Errorf("container %q has an unreadable OCI spec: %w", id, err)
	}
	info.Spec = &spec
	if img, err := c.c.ImageService().Get(ctx, ci.Image); err == nil {
		info.Record.ImageDigest = img.Target.Digest.String()
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return info, nil
		}
		return nil, classify(err, "task")
	}
	st, err := task.Status(ctx)
	if err != nil {
		return nil, classify(err, "task status")
	}
	info.Status, info.PID = st.Status, task.Pid()
	return info, nil
}

func recordOf(ns string, ci containers.Container) wire.Container {
	r := wire.Container{
		Namespace: ns, ID: ci.ID, Image: ci.Image, Labels: ci.Labels,
		Runtime: ci.Runtime.Name, Snapshotter: ci.Snapshotter, SnapshotKey: ci.SnapshotKey,
		Spec: json.RawMessage(ci.Spec.GetValue()),
	}
	if o := ci.Runtime.Options; o != nil && o.GetTypeUrl() != "" {
		r.RuntimeOptions = &wire.Any{TypeURL: o.GetTypeUrl(), Value: o.GetValue()}
	}
	for k, v := range ci.Extensions {
		if r.Extensions == nil {
			r.Extensions = map[string]wire.Any{}
		}
		r.Extensions[k] = wire.Any{TypeURL: v.GetTypeUrl(), Value: v.GetValue()}
	}
	return r
}

func toAny(a *wire.Any) typeurl.Any {
	if a == nil {
		return nil
	}
	return &types.Any{TypeUrl: a.TypeURL, Value: a.Value}
}

// CustomRunc reports whether the container's runtime options name their own runc binary.
func CustomRunc(rec wire.Container) bool {
	o, err := runcOptions(rec)
	return err == nil && o.BinaryName != ""
}

// RuncRoot is the directory of the container's runc state (state.json) on this host.
func (c *Client) RuncRoot(rec wire.Container) (string, error) {
	root := DefaultRuncRoot
	if rec.RuntimeOptions != nil {
		o, err := runcOptions(rec)
		if err != nil {
			return "", err
		}
		if o.Root != "" {
			root = o.Root
		}
	}
	if !strings.HasPrefix(rec.Runtime, "io.containerd.runc.") {
		return "", fmt.Errorf("container %q uses runtime %q: ferry moves runc containers only: %w", rec.ID, rec.Runtime, errdefs.ErrUnsupported)
	}
	return filepath.Join(root, rec.Namespace, rec.ID), nil
}

func runcOptions(rec wire.Container) (*options.Options, error) {
	o := &options.Options{}
	if rec.RuntimeOptions == nil || len(rec.RuntimeOptions.Value) == 0 {
		return o, nil
	}
	v, err := typeurl.UnmarshalAny(toAny(rec.RuntimeOptions))
	if err != nil {
		return nil, fmt.Errorf("runtime options of %q: %w", rec.ID, err)
	}
	ro, ok := v.(*options.Options)
	if !ok {
		return nil, fmt.Errorf("runtime options of %q are %T, not runc options: %w", rec.ID, v, errdefs.ErrUnsupported)
	}
	return ro, nil
}

// Pause freezes the container's task (cgroup freezer).
func (c *Client) Pause(ctx context.Context, id string) error {
	t, err := c.task(ctx, id)
	if err != nil {
		return err
	}
	return classify(t.Pause(c.with(ctx)), "pause "+id)
}

// Resume thaws the container's task.
func (c *Client) Resume(ctx context.Context, id string) error {
	t, err := c.task(ctx, id)
	if err != nil {
		return err
	}
	if st, err := t.Status(c.with(ctx)); err == nil && st.Status == containerd.Running {
		return nil
	}
	err = t.Resume(c.with(ctx))
	if err != nil && strings.Contains(err.Error(), "not paused") {
		if _, serr := os.Stat(fmt.Sprintf("/proc/%d", t.Pid())); errors.Is(serr, os.ErrNotExist) {
			// CRIU killed while its parasite code ran inside the task takes the task with it:
			// nothing is left to resume (README, Limits).
			return fmt.Errorf("resume %s: its process %d is gone: it died while frozen (a criu killed while its code ran inside the task takes the task with it): %w", id, t.Pid(), errdefs.ErrNotFound)
		}
		// containerd records the task paused but its cgroup is not frozen: what a criu killed in
		// the middle of a dump leaves (it thaws the cgroup to seize the tasks). Freeze the cgroup
		// again so that runc's resume and containerd's record agree, then resume.
		if ferr := freezeCgroup(ctx, t.Pid()); ferr != nil {
			return classify(errors.Join(err, ferr), "resume "+id)
		}
		err = t.Resume(c.with(ctx))
	}
	if err != nil {
		return classify(err, "resume "+id)
	}
	return nil
}

// freezeCgroup freezes the cgroup of pid (v1 freezer, or v2 cgroup.freeze) and waits until it is.
func freezeCgroup(ctx context.Context, pid uint32) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err
	}
	var file, want, check, frozen string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case strings.Contains(","+f[1]+",", ",freezer,"):
			file = filepath.Join("/sys/fs/cgroup/freezer", f[2], "freezer.state")
			want, check, frozen = "FROZEN", file, "FROZEN"
		case f[0] == "0" && f[1] == "" && file == "":
			file = filepath.Join("/sys/fs/cgroup", f[2], "cgroup.freeze")
			want, check, frozen = "1", filepath.Join("/sys/fs/cgroup", f[2], "cgroup.events"), "frozen 1"
		}
	}
	if file == "" {
		return fmt.Errorf("no freezer cgroup for pid %d", pid)
	}
	if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if b, err := os.ReadFile(check); err == nil && strings.Contains(string(b), frozen) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become frozen", file)
}

func (c *Client) task(ctx context.Context, id string) (containerd.Task, error) {
	ctx = c.with(ctx)
	ctr, err := c.c.LoadContainer(ctx, id)
	if err != nil {
		return nil, classify(err, "container "+id)
	}
	t, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, classify(err, "task of "+id)
	}
	return t, nil
}

// Remove kills the container's task if it has one (a paused task dies without running again),
// then deletes the container and its snapshot. A missing container is not an error.
func (c *Client) Remove(ctx context.Context, id string) error {
	ctx = c.with(ctx)
	ctr, err := c.c.LoadContainer(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(err, "container "+id)
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		exit, err := t.Wait(ctx)
		if err != nil {
			return classify(err, "wait "+id)
		}
		if err := t.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !cerrdefs.IsNotFound(err) {
			return classify(err, "kill "+id)
		}
		select {
		case <-exit:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("task %s did not exit after SIGKILL", id)
		case <-ctx.Done():
			return ctx.Err()
		}
		if _, err := t.Delete(ctx); err != nil && !cerrdefs.IsNotFound(err) {
			return classify(err, "delete task "+id)
		}
	} else if !cerrdefs.IsNotFound(err) {
		return classify(err, "task of "+id)
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !cerrdefs.IsNotFound(err) {
		return classify(err, "delete container "+id)
	}
	return nil
}

// CreatedAt is when containerd created the container (errdefs.ErrNotFound if it does not exist).
func (c *Client) CreatedAt(ctx context.Context, id string) (time.Time, error) {
	ci, err := c.c.ContainerService().Get(c.with(ctx), id)
	if err != nil {
		return time.Time{}, classify(err, "container "+id)
	}
	return ci.CreatedAt, nil
}

// Exists reports whether a container id exists.
// Running lists the namespace's containers whose task is running, by id.
func (c *Client) Running(ctx context.Context) ([]string, error) {
	ctx = c.with(ctx)
	cs, err := c.c.Containers(ctx)
	if err != nil {
		return nil, classify(err, "list containers")
	}
	var ids []string
	for _, ctr := range cs {
		t, err := ctr.Task(ctx, nil)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, classify(err, "task of "+ctr.ID())
		}
		st, err := t.Status(ctx)
		if err != nil {
			return nil, classify(err, "status of "+ctr.ID())
		}
		if st.Status == containerd.Running {
			ids = append(ids, ctr.ID())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func (c *Client) Exists(ctx context.Context, id string) (bool, error) {
	_, err := c.c.ContainerService().Get(c.with(ctx), id)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ImageDigest returns the target digest of an image present on this host ("" if absent) and
// whether it is unpacked into snapshotter.
func (c *Client) ImageDigest(ctx context.Context, name, snapshotter string) (string, bool, error) {
	ctx = c.with(ctx)
	img, err := c.c.GetImage(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, classify(err, "image "+name)
	}
	unpacked, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return "", false, classify(err, "image "+name)
	}
	return img.Target().Digest.String(), unpacked, nil
}

// WritableDir returns the host directory of a snapshot's writable layer (overlayfs upperdir, or
// the bind source of a parentless snapshot).
func (c *Client) WritableDir(ctx context.Context, snapshotter, key string) (string, error) {
	mounts, err := c.c.SnapshotService(snapshotter).Mounts(c.with(ctx), key)
	if err != nil {
		return "", classify(err, fmt.Sprintf("snapshot %s/%s", snapshotter, key))
	}
	if len(mounts) != 1 {
		return "", fmt.Errorf("snapshot %s/%s has %d mounts: %w", snapshotter, key, len(mounts), errdefs.ErrUnsupported)
	}
	m := mounts[0]
	switch m.Type {
	case "overlay":
		for _, o := range m.Options {
			if d, ok := strings.CutPrefix(o, "upperdir="); ok {
				return d, nil
			}
		}
		return "", fmt.Errorf("snapshot %s/%s: read-only overlay has no writable layer: %w", snapshotter, key, errdefs.ErrUnsupported)
	case "bind":
		return m.Source, nil
	}
	return "", fmt.Errorf("snapshotter %s gives %s mounts; ferry moves overlayfs and native snapshots: %w", snapshotter, m.Type, errdefs.ErrUnsupported)
}

// Create recreates a container from its record: same ID, image, labels, runtime, spec and
// extensions, with a fresh writable snapshot under the same key. It starts no task.
func (c *Client) Create(ctx context.Context, rec wire.Container) error {
	ctx = c.with(ctx)
	img, err := c.c.GetImage(ctx, rec.Image)
	if err != nil {
		return classify(err, fmt.Sprintf("image %s on this host", rec.Image))
	}
	if ok, err := img.IsUnpacked(ctx, rec.Snapshotter); err == nil && !ok {
		if err := img.Unpack(ctx, rec.Snapshotter); err != nil {
			return fmt.Errorf("unpack image %s: %w", rec.Image, err)
		}
	}
	withRecord := func(ctx context.Context, _ *containerd.Client, ci *containers.Container) error {
		ci.Labels, ci.Image = rec.Labels, rec.Image
		ci.Runtime = containers.RuntimeInfo{Name: rec.Runtime, Options: toAny(rec.RuntimeOptions)}
		ci.Spec = &types.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: rec.Spec}
		ci.Snapshotter = rec.Snapshotter
		for k, v := range rec.Extensions {
			if ci.Extensions == nil {
				ci.Extensions = map[string]typeurl.Any{}
			}
			ci.Extensions[k] = toAny(&v)
		}
		return nil
	}
	_, err = c.c.NewContainer(ctx, rec.ID, withRecord, containerd.WithNewSnapshot(rec.SnapshotKey, img), containerd.WithImageName(rec.Image))
	if err != nil {
		return classify(err, "create container "+rec.ID)
	}
	return nil
}

// RestoreOptions say how to restore a task.
type RestoreOptions struct {
	ImagesDir string // CRIU images
	WorkDir   string // CRIU's work files and logs (runc --work-path)
	Paused    bool   // freeze the task right after the restore, so that it runs only on commit
	// BinaryName replaces runc for this task (a wrapper that adds restore options containerd's
	// shim cannot pass); "" keeps the container's.
	BinaryName string
}

// Restore creates the container's task from CRIU images and starts it (runc restore, through
// containerd's shim). It returns the restored init's host pid.
func (c *Client) Restore(ctx context.Context, rec wire.Container, o RestoreOptions) (uint32, error) {
	imagesDir, workDir, paused := o.ImagesDir, o.WorkDir, o.Paused
	ctx = c.with(ctx)
	ctr, err := c.c.LoadContainer(ctx, rec.ID)
	if err != nil {
		return 0, classify(err, "container "+rec.ID)
	}
	base, err := runcOptions(rec)
	if err != nil {
		return 0, err
	}
	// Task options replace the container's runtime options: start from those.
	withRestore := func(_ context.Context, _ *containerd.Client, ti *containerd.TaskInfo) error {
		opts := proto.Clone(base).(*options.Options)
		opts.CriuImagePath, opts.CriuWorkPath = imagesDir, workDir
		if o.BinaryName != "" {
			opts.BinaryName = o.BinaryName
		}
		ti.Options = opts
		return nil
	}
	logPath := LogPath(rec.Namespace, rec.ID)
	if err := mkdirAll(filepath.Dir(logPath)); err != nil {
		return 0, err
	}
	task, err := ctr.NewTask(ctx, cio.LogFile(logPath), withRestore)
	if err != nil {
		return 0, classify(err, "create restored task "+rec.ID)
	}
	watch := watchRestore(ctx, imagesDir)
	err = task.Start(ctx)
	if watch.Stop() && err != nil {
		err = fmt.Errorf("criu ended in the middle of the restore and left it hanging; ferry killed what it had restored: %w", err)
	}
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, _ = task.Delete(dctx, containerd.WithProcessKill)
		return 0, fmt.Errorf("restore %s: %w%s", rec.ID, err, checkpoint.LogErrors(filepath.Join(workDir, "restore.log")))
	}
	if paused {
		if err := task.Pause(ctx); err != nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
			return 0, classify(err, "freeze the restored task")
		}
	}
	return task.Pid(), nil
}

func mkdirAll(p string) error { return os.MkdirAll(p, 0o700) }
