// Package config reads ferry's configuration file, /etc/ferry/ferry.toml. Flags override it.
//
//	# the dataset under which this host receives ZFS volumes (as a migration target)
//	zfs_parent = "tank/ferry"
//	# where volumes may live on this host (as a target, a volume outside them is refused)
//	volume_roots = ["/srv", "/mnt", "/data", "/var/lib/volumes"]
//	# run on the target once a container with a moved network attachment is committed there
//	network_hook = "/etc/ferry/hooks/network-moved"
//
//	# defaults of the ferry command on this host (as a source); its flags override them
//	identity = ["/root/.ssh/id_ferry"]
//	known_hosts = ["/root/.ssh/known_hosts"]
//	namespace = "default"
//	strategy = "auto"
//	max_downtime = "1s"
//	compress = "none"
//	bwlimit = "0"
//	concurrency = 2
//	receiver_command = "ferry-receiver"
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

	// Defaults of the ferry command's flags (as a source). A flag given on the command line
	// wins; an empty value here leaves the flag's own default.
	Identity        []string `toml:"identity"`
	KnownHosts      []string `toml:"known_hosts"`
	Namespace       string   `toml:"namespace"`
	Strategy        string   `toml:"strategy"`
	MaxDowntime     string   `toml:"max_downtime"`
	Compress        string   `toml:"compress"`
	BWLimit         string   `toml:"bwlimit"`
	Concurrency     int      `toml:"concurrency"`
	ReceiverCommand string   `toml:"receiver_command"`
}

// FlagDefaults are the file's defaults by the ferry flag they set (lists: one value each).
func (c Config) FlagDefaults() map[string][]string {
	m := map[string][]string{}
	add := func(flag string, vs ...string) {
		for _, v := range vs {
			if v != "" {
				m[flag] = append(m[flag], v)
			}
		}
	}
	add("identity", c.Identity...)
	add("known-hosts", c.KnownHosts...)
	add("namespace", c.Namespace)
	add("strategy", c.Strategy)
	add("max-downtime", c.MaxDowntime)
	add("compress", c.Compress)
	add("bwlimit", c.BWLimit)
	if c.Concurrency != 0 {
		add("concurrency", fmt.Sprint(c.Concurrency))
	}
	add("receiver-command", c.ReceiverCommand)
	return m
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
