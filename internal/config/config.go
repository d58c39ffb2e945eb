// Package config reads ferry's configuration file, /etc/ferry/ferry.toml. Flags override it.
//
//	# the dataset under which this host receives ZFS volumes (as a migration target)
//	zfs_parent = "tank/ferry"
//	# where volumes may live on this host (as a target, a volume outside them is refused)
//	volume_roots = ["/srv", "/mnt", "/data", "/var/lib/volumes"]
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
}

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
