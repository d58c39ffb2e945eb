// Package config reads ferry's configuration file, /etc/ferry/ferry.toml. Flags override it.
//
//	# the dataset under which this host receives ZFS volumes (as a migration target)
//	zfs_parent = "tank/ferry"
//	# where volumes may live on this host (as a target, a volume outside them is refused)
//	volume_roots = ["/srv", "/mnt", "/data", "/var/lib/volumes"]
//	# run on the target once a container with a moved network attachment is committed there
//	network_hook = "/etc/ferry/hooks/network-moved"
package config

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where ferry and ferry-receiver look for their configuration.
const DefaultPath = "/etc/ferry/ferry.toml"

// Config is the whole file. Every field is optional.
type Config struct {
	// ZFSParent is the dataset under which this host receives ZFS volumes. Empty: this host
	// receives volumes with rsync only.
	ZFSParent string `toml:"zfs_parent"`
	// VolumeRoots are the directories volumes may live under on this host. A migration target
	// refuses a volume elsewhere: a source must not write into /etc.
	VolumeRoots []string `toml:"volume_roots"`
	// NetworkHook runs on the target after a container whose network namespace moved is
	// committed there, so that the network sends its addresses to this host (a route update,
	// a gratuitous ARP, a BGP announcement…). Empty: DefaultNetworkHook, if it exists.
	NetworkHook string `toml:"network_hook"`
}

// DefaultNetworkHook is run when the file names no hook and it exists.
const DefaultNetworkHook = "/etc/ferry/hooks/network-moved"

// DefaultVolumeRoots apply when the file sets none.
var DefaultVolumeRoots = []string{"/srv", "/mnt", "/data", "/var/lib/volumes"}

// Load reads path; a missing file is an empty configuration.
func Load(path string) (Config, error) {
	c := Config{VolumeRoots: DefaultVolumeRoots}
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{VolumeRoots: DefaultVolumeRoots}, nil
	}
	if err != nil {
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return c, fmt.Errorf("%s: unknown setting %q", path, un[0].String())
	}
	return c, nil
}
