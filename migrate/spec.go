package migrate

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
	var binds []string
	for _, m := range s.Mounts {
		for _, o := range m.Options {
			if o == "bind" || o == "rbind" {
				binds = append(binds, m.Source+" → "+m.Destination)
				break
			}
		}
	}
	if len(binds) > 0 {
		p = append(p, fmt.Sprintf("the container has host-path mounts (%s): their data would not move; volumes are not supported by this version", strings.Join(binds, ", ")))
	}
	if s.Linux != nil {
		hasNet := false
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			hasNet = true
			if ns.Path != "" {
				p = append(p, fmt.Sprintf("the container joins the network namespace %s (CNI or shared networking): this version moves containers with their own network namespace only", ns.Path))
			}
		}
		if !hasNet {
			p = append(p, "the container uses the host's network namespace: its sockets cannot move with it")
		}
	}
	return p
}
