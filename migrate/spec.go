package migrate

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ferry-project/ferry/network"
	"github.com/ferry-project/ferry/transport/wire"
)

// IsBind reports whether an OCI mount is a bind mount (a host path).
func IsBind(m specs.Mount) bool {
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return m.Type == "bind"
}

// Volumes lists the container's volumes: its bind mounts, which must be directories (stat is
// os.Stat, replaceable in tests). Bind mounts of files are problems: a file is not a volume
// ferry can move (they are usually the runtime's /etc/hosts or resolv.conf of another host).
func Volumes(s *specs.Spec, stat func(string) (os.FileInfo, error)) ([]wire.Volume, []string) {
	var vols []wire.Volume
	var problems []string
	if s == nil {
		return nil, nil
	}
	for _, m := range s.Mounts {
		if !IsBind(m) {
			continue
		}
		fi, err := stat(m.Source)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("the container's host-path mount %s → %s cannot be read: %v", m.Source, m.Destination, err))
		case !fi.IsDir():
			problems = append(problems, fmt.Sprintf("the container bind-mounts the file %s at %s: ferry moves directory volumes only", m.Source, m.Destination))
		default:
			vols = append(vols, wire.Volume{Name: fmt.Sprintf("vol-%d", len(vols)+1), Path: filepath.Clean(m.Source), Destination: m.Destination})
		}
	}
	return vols, problems
}

// SpecProblems lists what this version cannot move in a container's OCI spec (pure). Each is a
// sentence naming the cause; preflight refuses on any of them instead of failing after the
// freeze or, worse, moving the container without its data.
func SpecProblems(s *specs.Spec) []string {
	var p []string
	if s == nil {
		return []string{"the container has no OCI spec"}
	}
	if s.Process != nil && s.Process.Terminal {
		p = append(p, "the container has a terminal (created with -t): ferry moves containers without a TTY")
	}
	if s.Linux != nil {
		hasNet := false
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			hasNet = true
			if ns.Path != "" && !network.Named(ns.Path) {
				p = append(p, fmt.Sprintf("the container joins the network namespace %s: ferry moves a container's own namespace, or a named one (%s/NAME, as CNI-style setups make) that it recreates on the target", ns.Path, network.NetnsDir))
			}
		}
		if !hasNet {
			p = append(p, "the container uses the host's network namespace: its sockets cannot move with it")
		}
	}
	return p
}

// netnsPath is the named network namespace the container joins ("" for its own or none).
func netnsPath(s *specs.Spec) string {
	if s == nil || s.Linux == nil {
		return ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && network.Named(ns.Path) {
			return ns.Path
		}
	}
	return ""
}
