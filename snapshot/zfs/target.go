package zfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v3"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// The target side, used by ferry-receiver.

// CheckParent verifies that the parent dataset exists and receives datasets.
func CheckParent(parent string) error {
	if err := Available(); err != nil {
		return err
	}
	ds, err := gozfs.GetDataset(parent)
	if err != nil {
		return fmt.Errorf("ZFS parent dataset %s: %w", parent, errors.Join(err, errdefs.ErrNotFound))
	}
	if ds.Type != gozfs.DatasetFilesystem {
		return fmt.Errorf("ZFS parent %s is a %s, not a filesystem: %w", parent, ds.Type, errdefs.ErrInvalid)
	}
	return nil
}

// FindBase looks for an unmounted dataset on this host (under scope, "" for every pool) that
// holds a snapshot of the source's list (same guid); the newest such snapshot in the source's
// order wins. It returns the dataset and the shared snapshot's guid, or "" when there is none.
func FindBase(scope string, source []Snapshot) (dataset, guid string, err error) {
	rank := map[string]int{}
	for i, s := range source {
		rank[s.GUID] = i + 1
	}
	fss, err := gozfs.Filesystems("")
	if err != nil {
		return "", "", err
	}
	best := 0
	for _, d := range fss {
		if scope != "" && d.Name != scope && !strings.HasPrefix(d.Name, scope+"/") {
			continue
		}
		snaps, err := Snapshots(d.Name)
		if err != nil {
			return "", "", err
		}
		for _, s := range snaps {
			if r := rank[s.GUID]; r > best {
				if mounted, _ := Mounted(d.Name); mounted {
					continue // in use: never receive over it
				}
				best, dataset, guid = r, d.Name, s.GUID
			}
		}
	}
	return dataset, guid, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.:-]+`)

// NewDatasetName picks a dataset name under parent that does not exist yet.
func NewDatasetName(parent, hint string) (string, error) {
	base := parent + "/" + strings.Trim(unsafeChars.ReplaceAllString(hint, "-"), "-")
	for i := 0; i < 100; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if _, err := gozfs.GetDataset(name); err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				return name, nil
			}
			return "", err
		}
	}
	return "", fmt.Errorf("no free dataset name under %s for %s: %w", parent, hint, errdefs.ErrConflict)
}

// Receive runs `zfs receive -F -u dataset` on the stream r.
func Receive(ctx context.Context, r io.Reader, dataset string) error {
	cmd := exec.CommandContext(ctx, "zfs", "receive", "-F", "-u", dataset)
	cmd.Stdin = r
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("zfs receive into %s: %w: %s", dataset, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// MountAt makes dataset mountable and mounts it at path.
func MountAt(dataset, path string) error {
	ds, err := gozfs.GetDataset(dataset)
	if err != nil {
		return err
	}
	if err := ds.SetProperty("canmount", "on"); err != nil {
		return err
	}
	if ds.Mountpoint != path {
		if err := ds.SetProperty("mountpoint", path); err != nil {
			return fmt.Errorf("mount %s at %s: %w", dataset, path, err)
		}
	}
	if ok, err := Mounted(dataset); err != nil || ok {
		return err
	}
	if _, err := ds.Mount(false, nil); err != nil {
		return fmt.Errorf("mount %s at %s: %w", dataset, path, err)
	}
	return nil
}

// Retire unmounts a dataset, keeps it from mounting again, and marks it as the base of a later
// move back.
func Retire(dataset, migrationID string) error {
	ds, err := gozfs.GetDataset(dataset)
	if err != nil {
		return err
	}
	if ok, _ := Mounted(dataset); ok {
		if _, err := ds.Unmount(false); err != nil {
			return fmt.Errorf("unmount %s: %w", dataset, err)
		}
	}
	if err := ds.SetProperty("canmount", "noauto"); err != nil {
		return err
	}
	return ds.SetProperty(RetiredProperty, migrationID)
}

// Park unmounts a dataset (if mounted or even missing, not an error) and keeps it from mounting
// by itself: what an aborted restore leaves of a base dataset.
func Park(dataset string) error {
	ds, err := gozfs.GetDataset(dataset)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		return err
	}
	if ok, _ := Mounted(dataset); ok {
		if _, err := ds.Unmount(false); err != nil {
			return fmt.Errorf("unmount %s: %w", dataset, err)
		}
	}
	return ds.SetProperty("canmount", "noauto")
}

// Unretire clears the retired mark (the dataset holds a live volume again).
func Unretire(dataset string) error {
	_, err := exec.Command("zfs", "inherit", RetiredProperty, dataset).CombinedOutput()
	return err
}

// Prune destroys every ferry snapshot of dataset except keep (dataset@snap, may be empty).
// Snapshots that ferry did not make are never touched.
func Prune(dataset, keep string) error {
	snaps, err := Snapshots(dataset)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range snaps {
		if s.Name == keep || !strings.HasPrefix(Short(s.Name), snapPrefix) {
			continue
		}
		if err := destroy(s.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RollbackTo rolls a dataset back to snap (dataset@snap), destroying later snapshots.
func RollbackTo(snap string) error {
	ds, err := gozfs.GetDataset(snap)
	if err != nil {
		return err
	}
	return ds.Rollback(true)
}

// Destroy removes a dataset and its snapshots (a missing one is not an error). It unmounts the
// dataset first: zfs-fuse's `destroy -f` reports a mounted dataset as busy.
func Destroy(dataset string) error {
	ds, err := gozfs.GetDataset(dataset)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		return err
	}
	if ok, _ := Mounted(dataset); ok {
		if _, err := ds.Unmount(false); err != nil {
			return fmt.Errorf("unmount %s: %w", dataset, err)
		}
	}
	// Right after an unmount (or a receive) ZFS may still call the dataset busy for a moment
	// (seen on zfs-fuse under load): retry that, briefly, and only that.
	for i := 0; ; i++ {
		err = ds.Destroy(gozfs.DestroyRecursive)
		if err == nil || !strings.Contains(err.Error(), "dataset is busy") || i == 20 {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
