package receiver

import (
	"strings"
	"testing"

	"github.com/ferry-project/ferry/transport/wire"
)

func TestTargetProblems(t *testing.T) {
	good := wire.HostFacts{Host: "b", CRIUVersion: 40101, Rsync: "3.2.7", FreeBytes: 10 << 30}
	req := wire.PreflightRequest{Source: wire.HostFacts{Host: "a", CRIUVersion: 40101}, ImageBytes: 256 << 20, FSBytes: 1 << 20}
	if p := TargetProblems(good, req); len(p) != 0 {
		t.Fatalf("good target refused: %v", p)
	}
	cases := map[string]func(*wire.HostFacts, *wire.PreflightRequest){
		"CRIU is not usable": func(f *wire.HostFacts, _ *wire.PreflightRequest) {
			f.CRIUVersion, f.CRIUCheck = 0, "criu is not installed"
		},
		"ferry needs ≥ 4.0.0": func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.CRIUVersion = 31701 },
		"`criu check` fails": func(f *wire.HostFacts, _ *wire.PreflightRequest) {
			f.CRIUCheck = "vdso: Unexpected rt vDSO area bounds"
		},
		"is older than on a":        func(_ *wire.HostFacts, r *wire.PreflightRequest) { r.Source.CRIUVersion = 40200 },
		"rsync is not installed":    func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.Rsync = "" },
		"the migration needs about": func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.FreeBytes = 200 << 20 },
	}
	for want, mut := range cases {
		f, r := good, req
		mut(&f, &r)
		p := TargetProblems(f, r)
		if len(p) != 1 || !strings.Contains(p[0].Message, want) {
			t.Errorf("%s: %+v", want, p)
		}
	}
}
