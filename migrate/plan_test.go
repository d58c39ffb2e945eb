package migrate

import (
	"strings"
	"testing"

	"github.com/ferry-project/ferry/transport/wire"
)

func TestPlan(t *testing.T) {
	snaps := []wire.ZFSSnapshot{{Name: "tank/web@ferry-m1-final", GUID: "111"}, {Name: "tank/web@daily", GUID: "222"}}
	vols := []wire.Volume{
		{Name: "vol-1", Path: "/srv/plain"},
		{Name: "vol-2", Path: "/srv/web", ZFS: &wire.ZFSVolume{Dataset: "tank/web", Snapshots: snaps}},
		{Name: "vol-3", Path: "/srv/logs", ZFS: &wire.ZFSVolume{Dataset: "tank/logs"}},
		{Name: "vol-4", Path: "/srv/db", ZFS: &wire.ZFSVolume{Dataset: "tank/db"}},
	}
	tv := []wire.VolumeTarget{
		{Name: "vol-1", ZFS: true, Dataset: "pool/ferry/x"},
		{Name: "vol-2", ZFS: true, Dataset: "pool/ferry/web", BaseGUID: "111"},
		{Name: "vol-3", ZFS: false, ZFSReason: "b has no ZFS parent dataset (zfs_parent in /etc/ferry/ferry.toml)"},
		{Name: "vol-4", ZFS: true, Dataset: "pool/ferry/db", BaseGUID: "999"}, // a guid the source does not have
	}
	p := Plan("a", "b", vols, tv)
	want := []struct{ name, driver, reason, base string }{
		{"rootfs", "rsync", "writable layer", ""},
		{"vol-1", "rsync", "/srv/plain is not a ZFS dataset mountpoint on a", ""},
		{"vol-2", "zfs", "incremental from @ferry-m1-final", "111"},
		{"vol-3", "rsync", "b has no ZFS parent dataset", ""},
		{"vol-4", "zfs", "full send", ""},
	}
	if len(p) != len(want) {
		t.Fatalf("plan has %d mounts: %+v", len(p), p)
	}
	for i, w := range want {
		m := p[i]
		if m.Name != w.name || m.Driver != w.driver || !strings.Contains(m.Reason, w.reason) || m.BaseGUID != w.base {
			t.Errorf("mount %d = %+v, want %s via %s (%q) base %q", i, m, w.name, w.driver, w.reason, w.base)
		}
	}
	if p[2].Dataset != "pool/ferry/web" || p[1].Path != "/srv/plain" {
		t.Errorf("plan lost the target dataset or the path: %+v", p)
	}
}
