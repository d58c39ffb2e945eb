// Package zfs is the ZFS filesystem driver, on go-zfs/v3: while the container runs, a snapshot
// sent in full or incrementally from the newest snapshot both hosts share (matched by guid, so
// moving a container back and forth sends only changes); after the freeze, a second snapshot and
// the delta; the target receives into its dataset with `zfs receive -F -u` (go-zfs has no flags
// for that, so it is exec'd directly) and mounts it at the volume's path before the restore.
// After the commit both sides keep only the newest ferry snapshot, the base of the next move; the
// source's dataset is unmounted and kept as that base.
package zfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v3"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/transport/wire"
)

// Name of the driver in plans and reports.
const Name = "zfs"

// snapPrefix starts the name of every snapshot ferry makes: ferry-<migration>-<step>.
const snapPrefix = "ferry-"

// RetiredProperty marks a source dataset kept only as the base of a later move back.
const RetiredProperty = "ferry:retired"

// Snapshot is a snapshot and its guid (the identity that survives send/receive).
type Snapshot = wire.ZFSSnapshot

// Short is the part of a snapshot's name after '@'.
func Short(name string) string { return name[strings.IndexByte(name, '@')+1:] }

// Snapshots lists a dataset's snapshots, oldest first, with their guids.
func Snapshots(dataset string) ([]Snapshot, error) {
	snaps, err := gozfs.Snapshots(dataset)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", dataset, err)
	}
	var out []Snapshot
	for _, s := range snaps {
		if !strings.HasPrefix(s.Name, dataset+"@") {
			continue // a child dataset's snapshot
		}
		g, err := s.GetProperty("guid")
		if err != nil {
			return nil, fmt.Errorf("guid of %s: %w", s.Name, err)
		}
		out = append(out, Snapshot{Name: s.Name, GUID: g})
	}
	return out, nil
}

// Available reports whether the zfs tools work on this host.
func Available() error {
	if _, err := exec.LookPath("zfs"); err != nil {
		return fmt.Errorf("zfs is not installed: %w", errors.Join(err, errdefs.ErrUnsupported))
	}
	if _, err := gozfs.Datasets("__ferry_probe_missing__"); err != nil && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("zfs does not work here: %w", errors.Join(err, errdefs.ErrUnsupported))
	}
	return nil
}

// Mounted reports whether a dataset is mounted.
func Mounted(dataset string) (bool, error) {
	d, err := gozfs.GetDataset(dataset)
	if err != nil {
		return false, err
	}
	v, err := d.GetProperty("mounted")
	return v == "yes", err
}

// DatasetAt returns the mounted filesystem dataset whose mountpoint is path ("" if none).
func DatasetAt(path string) (string, error) {
	fss, err := gozfs.Filesystems("")
	if err != nil {
		return "", err
	}
	for _, d := range fss {
		if d.Mountpoint != path {
			continue
		}
		if ok, err := Mounted(d.Name); err == nil && ok {
			return d.Name, nil
		}
	}
	return "", nil
}

// Driver is the source side of the zfs driver for one migration.
type Driver struct {
	Streams     snapshot.StreamOpener
	MigrationID string
	Log         *slog.Logger

	mu   sync.Mutex
	sent map[string]string // mount name → newest snapshot the target has from this migration
	made map[string][]string
}

var _ snapshot.Driver = (*Driver)(nil)

// Name implements snapshot.Driver.
func (d *Driver) Name() string { return Name }

func (d *Driver) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// Prepare implements snapshot.Driver: the dataset is mounted at the mount's path and the base
// snapshot, if any, exists.
func (d *Driver) Prepare(_ context.Context, m snapshot.Mount) error {
	ds, err := gozfs.GetDataset(m.Dataset)
	if err != nil {
		return fmt.Errorf("zfs %s: dataset %s: %w", m.Name, m.Dataset, errors.Join(err, errdefs.ErrNotFound))
	}
	if ds.Mountpoint != m.Source {
		return fmt.Errorf("zfs %s: %s is mounted at %s, not %s: %w", m.Name, m.Dataset, ds.Mountpoint, m.Source, errdefs.ErrInvalid)
	}
	if m.Base != "" {
		if _, err := gozfs.GetDataset(m.Dataset + "@" + m.Base); err != nil {
			return fmt.Errorf("zfs %s: base snapshot %s@%s: %w", m.Name, m.Dataset, m.Base, errors.Join(err, errdefs.ErrNotFound))
		}
	}
	return nil
}

// PreSync implements snapshot.Driver: snapshot and send (incrementally from the base or from the
// previous pre-sync when there is one).
func (d *Driver) PreSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	d.mu.Lock()
	n := len(d.made[m.Name])
	d.mu.Unlock()
	return d.sync(ctx, m, fmt.Sprintf("pre%d", n+1))
}

// FinalSync implements snapshot.Driver: the delta since the last pre-sync.
func (d *Driver) FinalSync(ctx context.Context, m snapshot.Mount) (snapshot.Stats, error) {
	return d.sync(ctx, m, "final")
}

func (d *Driver) sync(ctx context.Context, m snapshot.Mount, step string) (snapshot.Stats, error) {
	start := time.Now()
	ds, err := gozfs.GetDataset(m.Dataset)
	if err != nil {
		return snapshot.Stats{}, fmt.Errorf("zfs %s: %w", m.Name, err)
	}
	name := snapPrefix + d.MigrationID + "-" + step
	snap, err := ds.Snapshot(name, false)
	if err != nil {
		return snapshot.Stats{}, fmt.Errorf("zfs %s: snapshot %s@%s: %w", m.Name, m.Dataset, name, err)
	}
	d.mu.Lock()
	if d.sent == nil {
		d.sent, d.made = map[string]string{}, map[string][]string{}
	}
	d.made[m.Name] = append(d.made[m.Name], snap.Name)
	from := d.sent[m.Name]
	d.mu.Unlock()
	if from == "" && m.Base != "" {
		from = m.Dataset + "@" + m.Base
	}
	n, err := d.send(ctx, m, from, snap)
	st := snapshot.Stats{Bytes: n, Duration: time.Since(start)}
	if err != nil {
		return st, err
	}
	d.mu.Lock()
	d.sent[m.Name] = snap.Name
	d.mu.Unlock()
	d.log().Info("zfs sent", "mount", m.Name, "snapshot", snap.Name, "from", from, "bytes", n)
	return st, nil
}

// send streams `zfs send [-i from] snap` to the target and waits for its receive to finish.
func (d *Driver) send(ctx context.Context, m snapshot.Mount, from string, snap *gozfs.Dataset) (int64, error) {
	s, err := d.Streams.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamZFS, Name: m.Name})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() }) // zfs send ends on EPIPE
	defer stop()
	cw := &countingWriter{w: s}
	if from != "" {
		var base *gozfs.Dataset
		if base, err = gozfs.GetDataset(from); err != nil {
			return 0, fmt.Errorf("zfs %s: base %s: %w", m.Name, from, err)
		}
		err = snap.IncrementalSend(base, cw)
	} else {
		err = snap.SendSnapshot(cw)
	}
	if err != nil {
		if ctx.Err() != nil {
			return cw.n, ctx.Err()
		}
		return cw.n, fmt.Errorf("zfs send %s: %w", snap.Name, err)
	}
	if err := s.CloseWrite(); err != nil {
		return cw.n, err
	}
	// The target answers once `zfs receive` has finished.
	env, err := wire.NewConnRW(s, io.Discard, nil).Recv()
	if err != nil {
		return cw.n, fmt.Errorf("zfs %s: no answer from the target's receive: %w", m.Name, err)
	}
	if env.Error != nil {
		return cw.n, fmt.Errorf("zfs %s: target: %w", m.Name, env.Error)
	}
	return cw.n, nil
}

// Commit implements snapshot.Driver: keep only the newest ferry snapshot (the base of the next
// move), unmount the dataset and mark it retired. The container is gone from this host by now.
func (d *Driver) Commit(_ context.Context, m snapshot.Mount) error {
	d.mu.Lock()
	keep := d.sent[m.Name]
	d.mu.Unlock()
	if err := Prune(m.Dataset, keep); err != nil {
		return err
	}
	return Retire(m.Dataset, d.MigrationID)
}

// Abort implements snapshot.Driver: remove the snapshots this migration made on the source.
func (d *Driver) Abort(_ context.Context, m snapshot.Mount) error {
	d.mu.Lock()
	made := d.made[m.Name]
	d.mu.Unlock()
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := destroy(made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func destroy(name string) error {
	ds, err := gozfs.GetDataset(name)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		return err
	}
	return ds.Destroy(gozfs.DestroyDefault)
}
