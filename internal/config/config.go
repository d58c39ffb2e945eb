// Package config reads ferry's configuration file, /etc/ferry/ferry.toml. Flags override it.
//
//	# the dataset under which this host receives ZFS volumes (as a migration target)
//	zfs_parent = "tank/ferry"
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
}

// Load reads path; a missing file is an empty configuration.
func Load(path string) (Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, nil
	}
	if err != nil {
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return c, fmt.Errorf("%s: unknown setting %q", path, un[0].String())
	}
	return c, nil
}
