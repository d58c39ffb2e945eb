package migrate

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecProblems(t *testing.T) {
	base := func() *specs.Spec {
		return &specs.Spec{
			Process: &specs.Process{},
			Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/run", Type: "tmpfs"}},
			Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}}},
		}
	}
	if p := SpecProblems(base()); len(p) != 0 {
		t.Fatalf("a plain container is refused: %v", p)
	}
	cases := map[string]func(*specs.Spec){
		"terminal": func(s *specs.Spec) { s.Process.Terminal = true },
		"host-path mounts (/srv/data → /data)": func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Source: "/srv/data", Destination: "/data", Type: "bind", Options: []string{"rbind", "rw"}})
		},
		"joins the network namespace /var/run/netns/cni-1": func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/var/run/netns/cni-1" },
		"host's network namespace":                         func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:1] },
	}
	for want, mut := range cases {
		s := base()
		mut(s)
		if p := SpecProblems(s); len(p) != 1 || !strings.Contains(p[0], want) {
			t.Errorf("%s: %v", want, p)
		}
	}
}
