package migrate

import (
	"os"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/transport/wire"

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

func TestVolumes(t *testing.T) {
	s := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc"},
		{Source: "/srv/data/", Destination: "/data", Type: "bind", Options: []string{"rbind", "rw"}},
		{Source: "/etc/resolv.conf", Destination: "/etc/resolv.conf", Options: []string{"bind", "ro"}},
		{Source: "/srv/gone", Destination: "/gone", Options: []string{"rbind"}},
		{Source: "/srv/logs", Destination: "/logs", Options: []string{"rbind"}},
	}}
	dir, file := fakeInfo{dir: true}, fakeInfo{}
	stat := func(p string) (os.FileInfo, error) {
		switch p {
		case "/srv/data/", "/srv/logs":
			return dir, nil
		case "/etc/resolv.conf":
			return file, nil
		}
		return nil, os.ErrNotExist
	}
	vols, problems := Volumes(s, stat)
	if len(vols) != 2 || vols[0] != (wire.Volume{Name: "vol-1", Path: "/srv/data", Destination: "/data"}) || vols[1].Name != "vol-2" || vols[1].Path != "/srv/logs" {
		t.Errorf("volumes = %+v", vols)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "file /etc/resolv.conf") || !strings.Contains(problems[1], "/srv/gone") {
		t.Errorf("problems = %v", problems)
	}
}

type fakeInfo struct {
	os.FileInfo
	dir bool
}

func (f fakeInfo) IsDir() bool { return f.dir }
