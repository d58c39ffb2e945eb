package migrate

import (
	"fmt"

	"github.com/ferry-project/ferry/snapshot/rsync"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport/wire"
)

// RootfsMount is the name of the writable layer in plans.
const RootfsMount = "rootfs"

// Plan chooses the driver of each part of the container's filesystem (pure). The writable layer
// goes with rsync. A volume goes with zfs when its source path is a mounted dataset and the
// target can receive it; otherwise with rsync, and the reason says why not zfs.
func Plan(source, target string, vols []wire.Volume, tv []wire.VolumeTarget) []wire.Mount {
	plan := []wire.Mount{{Name: RootfsMount, Driver: rsync.Name, Reason: "writable layer (an overlayfs upper directory): rsync"}}
	byName := map[string]wire.VolumeTarget{}
	for _, t := range tv {
		byName[t.Name] = t
	}
	for _, v := range vols {
		m := wire.Mount{Name: v.Name, Path: v.Path, Driver: rsync.Name}
		t, answered := byName[v.Name]
		switch {
		case v.ZFS == nil:
			m.Reason = fmt.Sprintf("%s is not a ZFS dataset mountpoint on %s: rsync", v.Path, source)
		case !answered || !t.ZFS:
			why := t.ZFSReason
			if why == "" {
				why = target + " did not offer ZFS"
			}
			m.Reason = fmt.Sprintf("%s is dataset %s, but %s: rsync", v.Path, v.ZFS.Dataset, why)
		default:
			m.Driver, m.Dataset, m.BaseGUID = zfs.Name, t.Dataset, t.BaseGUID
			if base := snapshotByGUID(v.ZFS.Snapshots, t.BaseGUID); base != "" {
				m.Reason = fmt.Sprintf("zfs: %s → %s:%s, incremental from @%s (both hosts have it)", v.ZFS.Dataset, target, t.Dataset, zfs.Short(base))
			} else {
				m.Reason = fmt.Sprintf("zfs: %s → %s:%s, full send (no snapshot in common)", v.ZFS.Dataset, target, t.Dataset)
				m.BaseGUID = ""
			}
		}
		plan = append(plan, m)
	}
	return plan
}

func snapshotByGUID(snaps []wire.ZFSSnapshot, guid string) string {
	if guid == "" {
		return ""
	}
	for _, s := range snaps {
		if s.GUID == guid {
			return s.Name
		}
	}
	return ""
}
