package receiver

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/snapshot/rsync"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport/wire"
)

var volumeNameRE = regexp.MustCompile(`^vol-[0-9]{1,4}$`)

func baseMark(c wire.Container) string { return c.Namespace + "/" + c.ID }

// zfsUnavailable says why this host cannot receive ZFS volumes ("" if it can).
func (s *server) zfsUnavailable(host string) string {
	if s.conf.ZFSParent == "" {
		return host + " has no ZFS parent dataset (set zfs_parent in /etc/ferry/ferry.toml there)"
	}
	if err := zfs.CheckParent(s.conf.ZFSParent); err != nil {
		return fmt.Sprintf("the ZFS parent %s on %s is not usable: %v", s.conf.ZFSParent, host, err)
	}
	return ""
}

// volumeTargets answers the preflight for each volume: where it would go, and how.
func (s *server) volumeTargets(req wire.PreflightRequest, host string) ([]wire.VolumeTarget, []wire.Problem) {
	var out []wire.VolumeTarget
	var problems []wire.Problem
	zfsWhy := ""
	for _, v := range req.Volumes {
		if v.ZFS != nil {
			zfsWhy = s.zfsUnavailable(host)
			break
		}
	}
	for _, v := range req.Volumes {
		t := wire.VolumeTarget{Name: v.Name}
		if err := checkVolumePath(v.Path, s.conf.VolumeRoots); err != nil {
			problems = append(problems, wire.Problem{Code: "invalid", Message: err.Error(), Hint: "add its root to volume_roots in /etc/ferry/ferry.toml on " + host})
			out = append(out, t)
			continue
		}
		st, why := volumePathState(v.Path, baseMark(req.Container))
		if st == pathOccupied {
			problems = append(problems, wire.Problem{Code: "conflict", Message: fmt.Sprintf("volume path %s on %s: %s", v.Path, host, why), Hint: "move it away there, or choose another target"})
		}
		switch {
		case v.ZFS == nil:
		case zfsWhy != "":
			t.ZFSReason = zfsWhy
		case st == pathBase:
			t.ZFSReason = v.Path + " on " + host + " holds an rsync copy of this volume"
		default:
			ds, guid, err := zfs.FindBase("", v.ZFS.Snapshots)
			if err == nil && ds == "" {
				ds, err = zfs.NewDatasetName(s.conf.ZFSParent, req.Container.ID+"-"+v.Name)
			}
			if err != nil {
				t.ZFSReason = "ZFS on " + host + " failed: " + err.Error()
				break
			}
			t.ZFS, t.Dataset, t.BaseGUID = true, ds, guid
		}
		out = append(out, t)
	}
	return out, problems
}

// checkPlan validates the source's plan: one writable layer by rsync, volumes confined to the
// volume roots, datasets either new under the ZFS parent or an idle base holding the snapshot
// the plan starts from.
func (s *server) checkPlan(plan []wire.Mount, c wire.Container) error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("plan: "+f+": %w", append(a, errdefs.ErrInvalid)...)
	}
	seen := map[string]bool{}
	rootfs := 0
	for _, m := range plan {
		if seen[m.Name] {
			return bad("mount %s twice", m.Name)
		}
		seen[m.Name] = true
		if m.Name == "rootfs" {
			if m.Driver != rsync.Name {
				return bad("the writable layer moves with rsync, not %s", m.Driver)
			}
			rootfs++
			continue
		}
		if !volumeNameRE.MatchString(m.Name) {
			return bad("mount name %q", m.Name)
		}
		if err := checkVolumePath(m.Path, s.conf.VolumeRoots); err != nil {
			return err
		}
		switch m.Driver {
		case rsync.Name:
		case zfs.Name:
			if why := s.zfsUnavailable("this host"); why != "" {
				return fmt.Errorf("%s: %w", why, errdefs.ErrUnsupported)
			}
			if err := s.checkDataset(m); err != nil {
				return err
			}
		default:
			return fmt.Errorf("mount %s: driver %q: %w", m.Name, m.Driver, errdefs.ErrUnsupported)
		}
	}
	if rootfs != 1 {
		return bad("%d writable layers", rootfs)
	}
	return nil
}

func (s *server) checkDataset(m wire.Mount) error {
	snaps, err := zfs.Snapshots(m.Dataset)
	if err != nil { // it does not exist: it must be new under the parent
		if !strings.HasPrefix(m.Dataset, s.conf.ZFSParent+"/") || strings.Contains(strings.TrimPrefix(m.Dataset, s.conf.ZFSParent+"/"), "/") || m.BaseGUID != "" {
			return fmt.Errorf("plan: dataset %s is neither new under %s nor a base here: %w", m.Dataset, s.conf.ZFSParent, errdefs.ErrInvalid)
		}
		return nil
	}
	if mounted, _ := zfs.Mounted(m.Dataset); mounted {
		return fmt.Errorf("plan: dataset %s is mounted (in use) here: %w", m.Dataset, errdefs.ErrConflict)
	}
	if baseSnapshot(snaps, m.BaseGUID) == "" {
		return fmt.Errorf("plan: dataset %s has no snapshot with guid %q to receive onto: %w", m.Dataset, m.BaseGUID, errdefs.ErrInvalid)
	}
	return nil
}

func baseSnapshot(snaps []zfs.Snapshot, guid string) string {
	if guid == "" {
		return ""
	}
	for _, sn := range snaps {
		if sn.GUID == guid {
			return sn.Name
		}
	}
	return ""
}

// prepareVolumes readies each volume's destination, each change journaled with its undo first.
// Called with s.mu held, after the journal exists.
func (s *server) prepareVolumes() error {
	mark := baseMark(s.rec)
	for _, m := range s.plan {
		if m.Name == "rootfs" {
			continue
		}
		st, why := volumePathState(m.Path, mark)
		if st == pathOccupied || (m.Driver == zfs.Name && st == pathBase) {
			return fmt.Errorf("volume path %s: %s: %w", m.Path, why, errdefs.ErrConflict)
		}
		switch m.Driver {
		case rsync.Name:
			switch st {
			case pathAbsent:
				if err := s.j.add(Undo{Kind: undoPath, Path: firstMissing(m.Path)}); err != nil {
					return err
				}
				if err := os.MkdirAll(m.Path, 0o755); err != nil {
					return err
				}
			case pathEmpty:
				if err := s.j.add(Undo{Kind: undoClear, Path: m.Path}); err != nil {
					return err
				}
			}
			s.mounts[m.Name] = m.Path
		case zfs.Name:
			u := Undo{Kind: undoZFSDestroy, Path: m.Dataset}
			if m.BaseGUID != "" {
				snaps, err := zfs.Snapshots(m.Dataset)
				if err != nil {
					return err
				}
				u = Undo{Kind: undoZFSRollback, Path: baseSnapshot(snaps, m.BaseGUID)}
			}
			if err := s.j.add(u); err != nil {
				return err
			}
			s.datasets[m.Name] = m.Dataset
		}
	}
	return nil
}

// mountVolumes mounts each received dataset where its volume lives, before the restore.
func (s *server) mountVolumes() error {
	for _, m := range s.plan {
		if m.Driver != zfs.Name {
			continue
		}
		if err := s.j.add(Undo{Kind: undoZFSUnmount, Path: m.Dataset}); err != nil {
			return err
		}
		if err := zfs.MountAt(m.Dataset, m.Path); err != nil {
			return err
		}
	}
	return nil
}

// commitVolumes finishes volumes after the commit: datasets keep only their newest snapshot (the
// base of the next move) and lose the retired mark; rsync volumes lose the stale-copy mark.
func (s *server) commitVolumes() {
	for _, m := range s.plan {
		switch {
		case m.Driver == zfs.Name:
			snaps, err := zfs.Snapshots(m.Dataset)
			if err == nil && len(snaps) > 0 {
				err = zfs.Prune(m.Dataset, snaps[len(snaps)-1].Name)
			}
			if err == nil {
				err = zfs.Unretire(m.Dataset)
			}
			if err != nil {
				s.log.Warn("after commit: tidying ZFS snapshots", "dataset", m.Dataset, "err", err)
			}
		case m.Name != "rootfs":
			_ = unix.Removexattr(m.Path, rsync.BaseXattr)
		}
	}
}
