// Package lab builds ferry's test lab: two (or more) real Linux "hosts" on one machine. Each host
// has its own network, mount, UTS and cgroup namespaces, its own sshd (key-only) and its own
// containerd; /var/lib/containerd, /run/containerd, /var/lib/ferry, /etc/ferry, /root/.ssh and
// /tmp are private to it. Nothing here is used by the product: only by cmd/ferry-lab, the demo and
// the end-to-end tests.
package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// Host is one lab host.
type Host struct {
	Name string
	Addr netip.Addr
}

// Well-known lab layout. Addresses are from 198.18.0.0/15 (RFC 2544, benchmark networks).
var (
	LANPrefix = netip.MustParsePrefix("198.18.0.0/24")
	SwitchIP  = netip.MustParseAddr("198.18.0.1")
	Hosts     = []Host{
		{Name: "a", Addr: netip.MustParseAddr("198.18.0.11")},
		{Name: "b", Addr: netip.MustParseAddr("198.18.0.12")},
	}
)

// Paths of the lab on the real machine.
const (
	StateDir   = "/var/lib/ferry-lab" // keys, host roots, image, container records
	RunDir     = "/run/ferry-lab"     // namespace files (a private mount)
	CgroupRoot = "ferry-lab"          // every lab process lives under this cgroup
	netnsPref  = "ferrylab-"
	switchNS   = "ferrylab-sw"
	bridgeName = "br0"
)

// LookupHost returns the host called name.
func LookupHost(name string) (Host, error) {
	i := slices.IndexFunc(Hosts, func(h Host) bool { return h.Name == name })
	if i < 0 {
		names := make([]string, len(Hosts))
		for i, h := range Hosts {
			names[i] = h.Name
		}
		return Host{}, fmt.Errorf("no lab host %q (hosts: %v)", name, names)
	}
	return Hosts[i], nil
}

func (h Host) netns() string          { return netnsPref + h.Name }
func (h Host) netnsPath() string      { return "/run/netns/" + h.netns() }
func (h Host) dir() string            { return filepath.Join(StateDir, "hosts", h.Name) }
func (h Host) rootDir() string        { return filepath.Join(h.dir(), "root") }
func (h Host) nsDir() string          { return filepath.Join(RunDir, "ns", h.Name) }
func (h Host) nsFile(k string) string { return filepath.Join(h.nsDir(), k) }
func (h Host) cgroup() string         { return CgroupRoot + "/" + h.Name }
func (h Host) vethOutside() string    { return "veth-" + h.Name }

// privateDir is a directory that each host sees as its own.
type privateDir struct {
	Path  string // where the host sees it
	Tmpfs bool   // runtime state: a fresh tmpfs instead of a directory under the host's root
	Mode  os.FileMode
}

var privateDirs = []privateDir{
	// A host's /run is a tmpfs of its own, as on any systemd host (this machine's /run is part
	// of its root filesystem). CRIU keeps its kernel-feature probe in /run/criu.kdat only on a
	// tmpfs; without it every CRIU run probes again (~30 ms, several times per move).
	{Path: "/run", Tmpfs: true, Mode: 0o755},
	{Path: "/var/lib/containerd", Mode: 0o711},
	{Path: "/run/containerd", Tmpfs: true, Mode: 0o711},
	{Path: "/var/lib/ferry", Mode: 0o700},
	{Path: "/run/ferry", Tmpfs: true, Mode: 0o700},
	{Path: "/etc/ferry", Mode: 0o755},
	{Path: "/root/.ssh", Mode: 0o700},
	{Path: "/run/sshd", Tmpfs: true, Mode: 0o755},
	{Path: "/run/netns", Tmpfs: true, Mode: 0o755}, // containers' network namespaces
	{Path: "/tmp", Mode: 0o1777},
	{Path: "/srv", Mode: 0o755}, // lab volumes live here: the same path on every host
	// zfs-fuse: one daemon per host, each with its own socket, singleton lock and pool cache.
	{Path: "/run/zfs", Tmpfs: true, Mode: 0o755},
	{Path: "/run/lock/zfs", Tmpfs: true, Mode: 0o755},
	{Path: "/var/lib/zfs", Mode: 0o755},
}

// ZFS layout on each host with `up --zfs`.
const (
	Pool      = "tank"
	ZFSParent = "tank/ferry" // where the host receives volumes (ferry.toml zfs_parent)
	ZFSVols   = "tank/vols"  // where `ferry-lab run --volume PATH:zfs` creates datasets
	poolSize  = 8 << 30      // sparse file
)

// BinDir holds the ferry binaries every host has on its PATH.
func BinDir() string { return filepath.Join(StateDir, "bin") }

// HelperPath is ferry-lab as installed for the hosts (what runs inside a host).
func HelperPath() string { return filepath.Join(BinDir(), "ferry-lab") }

// HostPATH is the PATH of a login on a lab host.
func HostPATH() string {
	return BinDir() + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
